"""A connection of either backend: transactions, bounded waits, and what its errors mean. Statements use
``%s`` placeholders; values are always parameters, never spliced into SQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class StoreError(Exception):
    """The database cannot be used (bad URL, schema newer than this code...)."""


class SchemaBehind(StoreError):
    """The schema is older than this code and this role may not bring it up to date."""


@dataclass(frozen=True)
class Waits:
    """Bounds on every wait of a statement: ``statement`` seconds in all, of which at most ``lock``
    waiting for another session's lock (SQLite: its busy timeout)."""

    statement: float = 30.0
    lock: float = 5.0


def first_line(exc: BaseException) -> str:
    """A driver error's first line: the cause, without the query or connection details after it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Connection:
    dialect = ""
    # "The database refuses these rows for their content": found and quarantined. Anything
    # else is a fault of the database (permission, connection, timeout, disk): retried, then spooled.
    refusal: tuple[type[BaseException], ...] = ()
    # "This role may not do that" (create a table, for one).
    no_privilege: tuple[type[BaseException], ...] = ()
    conn: Any = None  # None: not connected (lost), the next call connects

    # -- backend hooks ------------------------------------------------------------------
    def cause(self, exc: BaseException) -> str:
        """What kept a batch out: ``lock timeout``, ``statement timeout``, ``permission``, ``disk``
        or ``connection`` (the rest)."""
        return "connection"

    def _begin(self, cur: Any, kind: str) -> None:
        """Start a transaction of ``kind``: ``read``, ``write`` or ``migrate`` (one process at a time)."""

    def _sql(self, sql: str) -> str:
        return sql

    def _value(self, value: Any) -> Any:
        return value

    def _timestamp(self, value: Any) -> datetime | None:
        return value

    def lease_as(self, run_id: str, holder: str, seconds: float) -> None:
        """Who takes the locks from now on, and for how long one lasts unrenewed (where a lock is a lease)."""

    def try_lock(self, client: str) -> bool:
        """Take the client's lock until this store closes; False if another run holds it."""
        raise NotImplementedError

    def locks_lost(self) -> dict[str, str]:
        """The clients whose lock this store held and no longer holds, with why (forgotten: never
        taken again); where a lock is a lease, renewed."""
        raise NotImplementedError

    def leases(self, client_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """The lease of each client (every client: None) where locks are leases: its ``run_id``,
        ``holder``, ``expires_at`` and whether it is ``live`` (not expired)."""
        return {}

    # -- shared -------------------------------------------------------------------------
    def _execute(self, cur: Any, sql: str, params: tuple | list = ()) -> Any:
        cur.execute(self._sql(sql), [self._value(v) for v in params])
        return cur

    @contextmanager
    def _transaction(self, kind: str = "write") -> Iterator[Any]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        if self.conn is not None and getattr(self.conn, "closed", False):  # closed by the server
            self.drop()
        if self.conn is None:  # lost earlier; raises the backend's error while it is down
            self.connect()
        cur = self.conn.cursor()
        try:
            self._begin(cur, kind)
            yield cur
            self.conn.commit()
        except BaseException:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - the connection itself may be gone: the next call reconnects
                self.drop()
            raise
        finally:
            with suppress(Exception):  # a cursor of a lost connection: nothing to close
                cur.close()

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._transaction("read") as cur:
            self._execute(cur, sql, params)
            return cur.fetchall()

    def drop(self) -> None:
        """Forget a connection that is gone; the next call opens a new one."""
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(Exception):  # already closed by the server or the network
                conn.close()
