"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

import io
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from .base import (
    CAMPAIGN_COLUMNS,
    COLUMN_TYPES,
    HISTORY,
    KEY,
    METRICS_COLUMNS,
    METRICS_ON_CONFLICT,
    UPSERT,
    Store,
    StoreError,
    Waits,
    first_line,
)

# The batch is copied (COPY, the bulk path) into a temporary table that empties
# at every commit, then one statement upserts it and writes its history rows:
# about twice the rows per second of one INSERT ... VALUES for both (see
# bench/RESULTS.md). xmax = 0 tells a fresh insert from an update; the upsert's
# own RETURNING gives the changed rows, as on SQLite.
INCOMING = "adcrawler_incoming"
# The temporary table's type for each column type of adcrawler.items.Column.
_COPY_TYPES = {"text": "text", "money": "numeric", "bigint": "bigint", "ts": "timestamptz", "json": "jsonb",
               "flags": "jsonb"}
CREATE_INCOMING = (f"CREATE TEMPORARY TABLE {INCOMING} ("
                   + ", ".join(f"{c} {_COPY_TYPES[COLUMN_TYPES[c]]}" for c in CAMPAIGN_COLUMNS)
                   + ") ON COMMIT DELETE ROWS")
UPSERT_WITH_HISTORY = (
    "WITH changed AS (" + UPSERT.replace("VALUES {values}", f"SELECT {', '.join(CAMPAIGN_COLUMNS)} FROM {INCOMING}")
    + ", (xmax = 0) AS inserted), "
    f"history AS (INSERT INTO campaign_metrics ({', '.join(METRICS_COLUMNS)}) "
    f"SELECT %s, {', '.join(f'i.{c}' for c in (*KEY, *HISTORY.values()))}, "
    "CASE WHEN c.inserted IS NULL THEN 'unchanged' WHEN c.inserted THEN 'inserted' ELSE 'updated' END "
    f"FROM {INCOMING} i LEFT JOIN changed c USING ({', '.join(KEY)}) {METRICS_ON_CONFLICT}) "
    "SELECT * FROM changed"
)
# fetched_at of the rows the upsert left alone (unchanged): when the platform last sent them.
TOUCH_UNCHANGED = (f"UPDATE campaigns SET fetched_at = i.fetched_at FROM {INCOMING} i WHERE "
                   + " AND ".join(f"campaigns.{c} = i.{c}" for c in KEY) + " AND campaigns.fetched_at < i.fetched_at")
# COPY's text format: tab-separated, \N for NULL, and these characters escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, str):
        # Most text needs no escape; looking is cheaper than translating.
        return v.translate(_COPY_ESCAPES) if ("\\" in v or "\t" in v or "\n" in v or "\r" in v) else v
    return str(v)  # numbers and timestamps: nothing to escape


def copy_line(row: dict[str, Any]) -> str:
    return "\t".join(_copy_field(row[c]) for c in CAMPAIGN_COLUMNS) + "\n"


class PostgresStore(Store):
    dialect = "postgresql"
    # A statement or lock timeout (QueryCanceled, LockNotAvailable) is an OperationalError too.
    transient = (psycopg2.OperationalError, psycopg2.InterfaceError)
    # Out of a column's range, text it cannot hold, a constraint: these rows.
    # Permission denied and the like (ProgrammingError...) are faults.
    refusal = (psycopg2.DataError, psycopg2.IntegrityError, UnicodeEncodeError)
    no_privilege = (psycopg2.errors.InsufficientPrivilege,)

    def __init__(self, url: str, waits: Waits = Waits(), name: str = "adcrawler"):
        super().__init__()
        self.url = url
        self.waits = waits
        self.name = name  # application_name: which of a run's connections this is
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
        # Session locks die with the connection that took them and are not taken
        # again: a lost lock is a lost lease (see locks_lost).
        self._lost.extend(self._locked)
        self._locked = []
        statement, lock = (round(seconds * 1000) for seconds in (self.waits.statement, self.waits.lock))
        # Every wait bounded: the server cancels a statement or a lock wait that
        # runs too long, and a server that stops answering is given up on by TCP.
        self.conn = psycopg2.connect(
            self.url, connect_timeout=max(1, round(self.waits.statement)), application_name=self.name,
            options=f"-c statement_timeout={statement} -c lock_timeout={lock}",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3, tcp_user_timeout=statement)
        with self.conn.cursor() as cur:
            cur.execute(CREATE_INCOMING)  # lives as long as the connection
        self.conn.commit()

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

    def locks_lost(self) -> list[str]:
        # A session holds its advisory locks for as long as it lives: the locks
        # are lost exactly when the connection that took them is.
        if self._locked:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT 1")
                self.conn.commit()
            except psycopg2.Error:
                super().close()
                self._lost.extend(self._locked)
                self._locked = []
        lost, self._lost = self._lost, []
        return lost

    def _advisory_lock(self, client: str) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"adcrawler:{client}",))
            locked = cur.fetchone()[0]
        self.conn.commit()
        return bool(locked)

    def _upsert(self, cur: Any, run_id: str, rows: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
        # Encoded here: text the database cannot hold fails before COPY starts,
        # as a refusal of these rows, not as a broken connection.
        data = "".join(map(copy_line, rows)).encode("utf-8")
        cur.copy_expert(f"COPY {INCOMING} ({', '.join(CAMPAIGN_COLUMNS)}) FROM STDIN WITH (ENCODING 'UTF8')",
                        io.BytesIO(data))
        cur.execute(UPSERT_WITH_HISTORY, (run_id,))
        # RETURNING gives the key (client, campaign), then xmax = 0.
        changed = {(client, campaign): inserted for client, campaign, inserted in cur.fetchall()}
        if len(changed) < len(rows):
            cur.execute(TOUCH_UNCHANGED)
        return changed

    def close(self) -> None:
        # Released now, not whenever the server process behind the connection
        # has ended: a run that starts right after this one finds its clients free.
        if self.conn is not None and self._locked:
            try:
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock_all()")
                self.conn.commit()
            except psycopg2.Error:
                pass  # the connection is gone, and its locks with it
        self._locked = []
        super().close()

    def reconnect(self) -> None:
        super().close()  # not self.close(): the locks went with the old connection, locks_lost says so
        self.connect()

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        result = psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch)
        return result or []
