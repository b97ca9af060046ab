"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from . import Store
from .connection import StoreError, Waits, first_line


class PostgresStore(Store):
    dialect = "postgresql"
    # Out of a column's range, text it cannot hold (a NUL is refused before it is sent: ValueError),
    # a constraint: these rows. Permission denied and the like are faults.
    refusal = (psycopg2.DataError, psycopg2.IntegrityError, UnicodeEncodeError, ValueError)
    no_privilege = (psycopg2.errors.InsufficientPrivilege,)

    def __init__(self, url: str, waits: Waits = Waits()):
        super().__init__()
        self.url = url
        self.waits = waits
        self._locked: list[str] = []  # clients whose lock the current connection holds
        self._lost: list[str] = []  # clients whose lock went with an earlier connection
        try:
            self.connect()
        except psycopg2.OperationalError as exc:
            # psycopg2's message can quote the DSN; keep only its first line, which does not.
            raise StoreError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None

    def cause(self, exc: BaseException) -> str:
        return {"55P03": "lock timeout", "57014": "statement timeout", "42501": "permission",
                "53100": "disk"}.get(getattr(exc, "pgcode", None) or "", "connection")

    def connect(self) -> None:
        # Session locks die with the connection that took them and are not taken again: a lost
        # lock is a lost lease (see locks_lost).
        self._lost.extend(self._locked)
        self._locked = []
        statement, lock = (round(seconds * 1000) for seconds in (self.waits.statement, self.waits.lock))
        # Every wait bounded: the server cancels a statement or a lock wait that runs too long,
        # and a server that stops answering is given up on by TCP.
        self.conn = psycopg2.connect(
            self.url, connect_timeout=max(1, round(self.waits.statement)), application_name="adcrawler",
            options=f"-c statement_timeout={statement} -c lock_timeout={lock}",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3, tcp_user_timeout=statement)

    def _begin(self, cur: Any, kind: str) -> None:
        # psycopg2 opens the transaction itself; migrations also wait for each other on a
        # transaction-level advisory lock (released at commit).
        if kind == "migrate":
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('adcrawler:migrate', 0))")

    def try_lock(self, client: str) -> bool:
        # A session-level advisory lock: the server drops it when the connection ends, so a
        # killed run never leaves a stale lock behind.
        with self._transaction("read") as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"adcrawler:{client}",))
            locked = bool(cur.fetchone()[0])
        if locked:
            self._locked.append(client)
        return locked

    def locks_lost(self) -> list[str]:
        # A session holds its advisory locks for as long as it lives: they are lost exactly
        # when the connection that took them is.
        if self._locked:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT 1")
                self.conn.commit()
            except (psycopg2.Error, AttributeError):  # AttributeError: dropped already
                self.drop()
        if self.conn is None:
            self._lost.extend(self._locked)
            self._locked = []
        lost, self._lost = self._lost, []
        return lost

    def close(self) -> None:
        # Released now, not whenever the server process behind the connection has ended: a run
        # that starts right after this one finds its clients free.
        if self.conn is not None and self._locked:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock_all()")
                self.conn.commit()
            except psycopg2.Error:
                pass  # the connection is gone, and its locks with it
        self._locked = []
        super().close()

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        return psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch) or []
