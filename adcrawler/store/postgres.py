"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extras

from .base import Store, StoreError, first_line


class PostgresStore(Store):
    dialect = "postgresql"
    transient = (psycopg2.OperationalError, psycopg2.InterfaceError)

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self._locked: list[str] = []
        try:
            self.connect()
        except psycopg2.OperationalError as exc:
            # psycopg2's message can quote the DSN; keep only its first line, which does not.
            raise StoreError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None

    def connect(self) -> None:
        self.conn = psycopg2.connect(self.url, connect_timeout=10, application_name="adcrawler")
        # Session locks die with a lost connection: take them again.
        for client in self._locked:
            if not self._advisory_lock(client):
                raise StoreError(f"client {client!r} was taken over by another run while reconnecting")

    def _begin(self, cur: Any, kind: str) -> None:
        # psycopg2 opens the transaction itself; migrations also wait for each
        # other on a transaction-level advisory lock (released at commit).
        if kind == "migrate":
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('adcrawler:migrate', 0))")

    def try_lock(self, client: str) -> bool:
        # A session-level advisory lock: the server drops it when the
        # connection ends, so a killed run never leaves a stale lock behind.
        if self._advisory_lock(client):
            self._locked.append(client)
            return True
        return False

    def _advisory_lock(self, client: str) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"adcrawler:{client}",))
            locked = cur.fetchone()[0]
        self.conn.commit()
        return bool(locked)

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        result = psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch)
        return result or []
