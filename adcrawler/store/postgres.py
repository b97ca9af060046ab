"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extras

from .base import Store, StoreError


class PostgresStore(Store):
    dialect = "postgresql"
    transient = (psycopg2.OperationalError, psycopg2.InterfaceError)

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        try:
            self.connect()
        except psycopg2.OperationalError as exc:
            # psycopg2's message can quote the DSN; keep only its first line, which does not.
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).splitlines()[0]}") from None

    def connect(self) -> None:
        self.conn = psycopg2.connect(self.url, connect_timeout=10, application_name="adcrawler")

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        result = psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch)
        return result or []
