"""What both backends share: the SQL, batch writes, migrations and run records.

Statements are written with ``%s`` placeholders and a ``{values}`` slot for
multi-row inserts; each backend renders them its own way. Values are always
parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from adcrawler.items import CampaignItem, RejectedRecord

from . import schema

CAMPAIGN_COLUMNS = ("client_id", "campaign_id", "name", "status", "budget", "impressions", "clicks",
                    "conversions", "created_at", "raw", "quality_flags", "sync_status", "synced_at", "sync_error",
                    "fetched_at", "updated_at")
# A row is unchanged, and not rewritten, when all of these are equal (the raw
# record is not compared: JSON text of the same record may differ in form).
COMPARED = ("name", "status", "budget", "impressions", "clicks", "conversions", "created_at", "quality_flags",
            "sync_status", "synced_at", "sync_error")
# A failed sync keeps the time of the last successful one.
_NEW = {"synced_at": "COALESCE(excluded.synced_at, campaigns.synced_at)"}

UPSERT = (
    f"INSERT INTO campaigns ({', '.join(CAMPAIGN_COLUMNS)}) VALUES {{values}} "
    "ON CONFLICT (client_id, campaign_id) DO UPDATE SET "
    + ", ".join(f"{c} = {_NEW.get(c, f'excluded.{c}')}" for c in CAMPAIGN_COLUMNS[2:])
    + " WHERE "
    + " OR ".join(f"campaigns.{c} IS DISTINCT FROM {_NEW.get(c, f'excluded.{c}')}" for c in COMPARED)
    + " RETURNING client_id, campaign_id"
)
METRICS_COLUMNS = ("run_id", "client_id", "campaign_id", "captured_at", "status", "budget", "impressions",
                   "clicks", "conversions", "quality_flags", "sync_status")
METRICS = (f"INSERT INTO campaign_metrics ({', '.join(METRICS_COLUMNS)}) VALUES {{values}} "
           "ON CONFLICT (run_id, client_id, campaign_id) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in METRICS_COLUMNS[3:]))
REJECTED = ("INSERT INTO rejected_records (run_id, client_id, campaign_id, reason, payload, payload_sha1, seen_at) "
            "VALUES {values} ON CONFLICT (run_id, client_id, payload_sha1) DO NOTHING")
RUN_COLUMNS = ("run_id", "client_id", "started_at", "finished_at", "outcome", "outcome_reasons", "finish_reason",
               "campaigns_seen", "campaigns_synced", "campaigns_failed", "rows_inserted", "rows_updated",
               "rows_unchanged", "records_rejected", "retries", "responses_429", "token_refreshes", "stats")
# A resumed run writes its row again: effort counters add up over the attempts
# that recorded one, the start stays the first attempt's, the rest is the latest.
_RUN_ADDED = ("rows_inserted", "rows_updated", "rows_unchanged", "retries", "responses_429", "token_refreshes")
_RUN_UPDATE = {
    **{c: f"excluded.{c}" for c in RUN_COLUMNS[2:]},
    **{c: f"sync_runs.{c} + excluded.{c}" for c in _RUN_ADDED},
    "started_at": "CASE WHEN sync_runs.started_at < excluded.started_at "
                  "THEN sync_runs.started_at ELSE excluded.started_at END",
}
RUN = (f"INSERT INTO sync_runs ({', '.join(RUN_COLUMNS)}) VALUES {{values}} "
       "ON CONFLICT (run_id, client_id) DO UPDATE SET "
       + ", ".join(f"{c} = {expr}" for c, expr in _RUN_UPDATE.items()))
RUN_STARTED = ("INSERT INTO sync_runs (run_id, client_id, started_at, outcome) VALUES {values} "
               "ON CONFLICT (run_id, client_id) DO UPDATE SET outcome = excluded.outcome, finished_at = NULL")


class StoreError(Exception):
    """The database cannot be used (bad URL, schema newer than this code...)."""


def first_line(exc: BaseException) -> str:
    """A driver error's first line: the cause, without the query or connection details after it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class BatchResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # quarantine rows written (validation's and the database's)

    def __iadd__(self, other: "BatchResult") -> "BatchResult":
        for f in ("inserted", "updated", "unchanged", "rejected"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self


@dataclass
class WriteResult:
    """What a write did, per client, and the rows the database refused."""

    clients: dict[str, BatchResult] = field(default_factory=dict)
    stored: list[CampaignItem] = field(default_factory=list)
    refused: list[tuple[CampaignItem | RejectedRecord, str]] = field(default_factory=list)

    def add(self, results: dict[str, BatchResult], items: list[CampaignItem | RejectedRecord]) -> None:
        for client, result in results.items():
            merged = self.clients.setdefault(client, BatchResult())
            merged += result
        self.stored.extend(i for i in items if isinstance(i, CampaignItem))


class Store:
    dialect = ""
    # Exceptions meaning "the database is unreachable right now, try again".
    transient: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self.conn: Any = None

    # -- backend hooks --------------------------------------------------
    def connect(self) -> None:
        raise NotImplementedError

    def _begin(self, cur: Any, kind: str) -> None:
        """Start a transaction of ``kind``: ``read``, ``write`` or ``migrate`` (one process at a time)."""

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql

    def _value(self, value: Any) -> Any:
        return value

    def _timestamp(self, value: Any) -> datetime | None:
        return value

    # -- shared logic ---------------------------------------------------
    def _execute(self, cur: Any, sql: str, params: tuple | list = ()) -> None:
        cur.execute(self._sql(sql), [self._value(v) for v in params])

    @contextmanager
    def _transaction(self, kind: str = "write") -> Iterator[Any]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        cur = self._cursor()
        try:
            self._begin(cur, kind)
            yield cur
            self.conn.commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._close_cursor(cur)

    def migrate(self, target: int = schema.LATEST) -> int:
        """Apply the migrations this database lacks, up to ``target``; returns the version now in force.

        Serialised: several processes starting together on a fresh database
        apply each migration once (PostgreSQL advisory lock, SQLite exclusive
        transaction); the others then find it applied.
        """
        with self._transaction("migrate") as cur:
            self._execute(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            self._execute(cur, "SELECT MAX(version) FROM schema_version")
            current = cur.fetchone()[0] or 0
            if current > schema.LATEST:
                raise StoreError(f"database schema version {current} is newer than this code ({schema.LATEST})")
            for version in range(current + 1, target + 1):
                for statement in schema.statements(self.dialect, version):
                    self._execute(cur, statement)
                self._execute(cur, "INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return max(current, target)

    def write(self, run_id: str, items: list[CampaignItem | RejectedRecord]) -> WriteResult:
        """Store ``items``; rows the database refuses for good are found and quarantined.

        The batch is tried whole, in one transaction. If the database refuses it
        for a reason retrying cannot cure (a value out of a column's range, text
        it cannot encode), the batch is halved until the refused rows stand
        alone; each is quarantined with the database's reason and the rest
        commit. Errors in ``transient`` (the database is unreachable) propagate:
        the caller retries or spools.
        """
        result = WriteResult()
        self._write_or_split(run_id, items, result)
        return result

    def _write_or_split(self, run_id: str, items: list[CampaignItem | RejectedRecord], result: WriteResult) -> None:
        try:
            result.add(self.write_batch(run_id, items), items)
            return
        except self.transient:
            raise
        except Exception as exc:  # noqa: BLE001 - refused by the database: find the rows
            if len(items) > 1:
                middle = len(items) // 2
                self._write_or_split(run_id, items[:middle], result)
                self._write_or_split(run_id, items[middle:], result)
                return
            refusal = exc
        item = items[0]
        reason = f"refused by the database: {first_line(refusal)}"
        result.refused.append((item, reason))
        if isinstance(item, RejectedRecord):
            raise StoreError(f"a quarantine row was refused: {first_line(refusal)}")
        record = json.loads(item.raw) if item.raw else {"id": item.campaign_id}
        quarantined = RejectedRecord.of(item.client_id, record, reason, item.fetched_at)
        result.add(self.write_batch(run_id, [quarantined]), [])

    def write_batch(self, run_id: str, items: list[CampaignItem | RejectedRecord]) -> dict[str, BatchResult]:
        """Store one batch in one transaction; returns, per client, what happened to its rows.

        Idempotent: writing the same batch again changes nothing and reports the
        rows as unchanged.
        """
        now = datetime.now(timezone.utc)
        latest: dict[tuple[str, str], CampaignItem] = {}
        rejected = []
        for item in items:
            if isinstance(item, CampaignItem):
                latest[item.client_id, item.campaign_id] = item  # the last word wins within a batch
            else:
                rejected.append(item)
        results: dict[str, BatchResult] = {}
        for r in rejected:
            results.setdefault(r.client_id, BatchResult()).rejected += 1
        with self._transaction() as cur:
            if latest:
                rows = [(i.client_id, i.campaign_id, i.name, i.status, i.budget, i.impressions, i.clicks,
                         i.conversions, i.created_at, i.raw, i.flags_text, i.sync_status, i.synced_at,
                         i.sync_error, i.fetched_at, now) for i in latest.values()]
                changed = self._upsert(cur, run_id, rows)
                for key in latest:
                    result = results.setdefault(key[0], BatchResult())
                    if key not in changed:
                        result.unchanged += 1
                    elif changed[key]:
                        result.inserted += 1
                    else:
                        result.updated += 1
            if rejected:
                self._insert_many(cur, REJECTED, [
                    (run_id, r.client_id, r.campaign_id, r.reason, r.payload,
                     hashlib.sha1(r.payload.encode()).hexdigest(), r.seen_at) for r in rejected], fetch=False)
        return results

    def _upsert(self, cur: Any, run_id: str, rows: list[tuple]) -> dict[tuple[str, str], bool]:
        """Upsert campaign ``rows`` (CAMPAIGN_COLUMNS order) and their history rows;
        returns the keys inserted (True) or updated (False): the rest were unchanged."""
        # Keys that exist before the upsert tell inserted from updated; RETURNING
        # names the rows inserted or updated, so the rest were unchanged.
        existing = self._existing(cur, [row[:2] for row in rows])
        changed = {(r[0], r[1]): (r[0], r[1]) not in existing for r in self._insert_many(cur, UPSERT, rows, fetch=True)}
        self._insert_many(cur, METRICS, [(run_id, r[0], r[1], r[14], r[3], r[4], r[5], r[6], r[7], r[10], r[11])
                                         for r in rows], fetch=False)
        return changed

    def _existing(self, cur: Any, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        by_client: dict[str, list[str]] = {}
        for client, campaign in keys:
            by_client.setdefault(client, []).append(campaign)
        for client, campaigns in by_client.items():
            marks = ", ".join(["%s"] * len(campaigns))
            self._execute(cur, f"SELECT campaign_id FROM campaigns WHERE client_id = %s AND campaign_id IN ({marks})",
                          [client, *campaigns])
            found.update((client, row[0]) for row in cur.fetchall())
        return found

    # -- runs -----------------------------------------------------------
    def done_campaigns(self, run_id: str, client: str) -> set[str]:
        """Campaigns this run already stored as synced (for a resumed run)."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT campaign_id FROM campaign_metrics WHERE run_id = %s AND client_id = %s "
                               "AND sync_status = 'synced'", (run_id, client))
            return {row[0] for row in cur.fetchall()}

    def run_counts(self, run_id: str, client: str) -> tuple[int, int]:
        """(synced, failed) campaigns stored for this run: right across resumed attempts."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT sync_status, COUNT(*) FROM campaign_metrics WHERE run_id = %s "
                               "AND client_id = %s GROUP BY sync_status", (run_id, client))
            counts = dict(cur.fetchall())
        return counts.get("synced", 0), counts.get("failed", 0)

    def start_run(self, run_id: str, client: str, started_at: datetime) -> list[tuple[str, datetime | None]]:
        """Record the run as ``running``; returns the runs of ``client`` that never finished
        (killed), now marked ``interrupted``. Call only while holding the client's lock."""
        with self._transaction() as cur:
            self._execute(cur, "SELECT run_id, started_at FROM sync_runs WHERE client_id = %s "
                               "AND outcome = 'running' AND run_id <> %s", (client, run_id))
            stale = [(row[0], self._timestamp(row[1])) for row in cur.fetchall()]
            if stale:
                self._execute(cur, "UPDATE sync_runs SET outcome = 'interrupted', outcome_reasons = "
                                   "'the process ended before the run did' WHERE client_id = %s "
                                   "AND outcome = 'running' AND run_id <> %s", (client, run_id))
            self._insert_many(cur, RUN_STARTED, [(run_id, client, started_at, "running")], fetch=False)
        return stale

    def record_run(self, row: dict[str, Any]) -> None:
        """Complete the ``sync_runs`` row of (run_id, client_id)."""
        values = tuple(json.dumps(row[c], default=str, sort_keys=True) if c == "stats" else row.get(c)
                       for c in RUN_COLUMNS)
        with self._transaction() as cur:
            self._insert_many(cur, RUN, [values], fetch=False)

    def last_success(self, client: str) -> datetime | None:
        """When the client's last successful run finished."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT MAX(finished_at) FROM sync_runs WHERE client_id = %s "
                               "AND outcome = 'succeeded'", (client,))
            return self._timestamp(cur.fetchone()[0])

    def try_lock(self, client: str) -> bool:
        """Take the client's lock for as long as this store is open; False if another run holds it."""
        raise NotImplementedError

    # -- connection -------------------------------------------------------
    def _cursor(self) -> Any:
        if self.conn is None:  # lost earlier; raises the backend's transient error while down
            self.connect()
        return self.conn.cursor()

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # the connection itself may be gone; reconnect() handles that
            pass

    def _close_cursor(self, cur: Any) -> None:
        try:
            cur.close()
        except Exception:
            pass

    def reconnect(self) -> None:
        self.close()
        self.connect()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None
