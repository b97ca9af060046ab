"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extras

from .base import CAMPAIGN_COLUMNS, METRICS_COLUMNS, UPSERT, Store, StoreError, first_line

# One statement for both tables: the VALUES are sent (and escaped) once, in one
# round trip; xmax = 0 tells a fresh insert from an update. The upsert's own
# RETURNING gives the changed rows, as on SQLite.
UPSERT_WITH_HISTORY = (
    f"WITH incoming ({', '.join(CAMPAIGN_COLUMNS)}) AS (VALUES %s), "
    "changed AS (" + UPSERT.replace("VALUES {values}", f"SELECT {', '.join(CAMPAIGN_COLUMNS)} FROM incoming")
    + ", xmax = 0), "
    f"history AS (INSERT INTO campaign_metrics ({', '.join(METRICS_COLUMNS)}) "
    "SELECT %s, client_id, campaign_id, fetched_at, status, budget, impressions, clicks, conversions, "
    "quality_flags, sync_status FROM incoming ON CONFLICT (run_id, client_id, campaign_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in METRICS_COLUMNS[3:]) + ") "
    "SELECT * FROM changed"
)
# VALUES rows carry no column types: give them the columns' types.
_ROW = ("(%s, %s, %s, %s, %s::numeric, %s::bigint, %s::bigint, %s::bigint, %s::timestamptz, %s::jsonb, %s, %s, "
        "%s::timestamptz, %s, %s::timestamptz, %s::timestamptz)")


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

    def _upsert(self, cur: Any, run_id: str, rows: list[tuple]) -> dict[tuple[str, str], bool]:
        # execute_values takes one placeholder, for the rows: bind the run id first.
        sql = cur.mogrify(UPSERT_WITH_HISTORY.replace("VALUES %s", "VALUES {rows}"), (run_id,)).decode()
        sql = sql.replace("%", "%%").replace("VALUES {rows}", "VALUES %s")
        changed = psycopg2.extras.execute_values(cur, sql, rows, template=_ROW, page_size=len(rows), fetch=True)
        return {(client, campaign): inserted for client, campaign, inserted in changed}

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        result = psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch)
        return result or []
