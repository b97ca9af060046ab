"""What both backends share: the SQL, batch writes, migrations and run records.

Statements are written with ``%s`` placeholders and a ``{values}`` slot for
multi-row inserts; each backend renders them its own way. Values are always
parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from itemadapter import ItemAdapter

from adcrawler.items import CampaignItem, RejectedRecord, columns

from . import schema

# Every column of ``campaigns`` and ``campaign_metrics`` derives from the
# declarations in adcrawler.items; ``updated_at`` is the store's own.
FIELDS = columns(CampaignItem)
KEY = tuple(sorted((name for name, c in FIELDS.items() if c.key), key=lambda name: FIELDS[name].key))
CAMPAIGN_COLUMNS = (*FIELDS, "updated_at")
COLUMN_TYPES = {**{name: c.type for name, c in FIELDS.items()}, "updated_at": "ts"}
# A row is unchanged, and not rewritten, when all of these are equal.
COMPARED = tuple(name for name, c in FIELDS.items() if c.compared and not c.key)
# A failed sync keeps the time of the last successful one.
_NEW = {"synced_at": "COALESCE(excluded.synced_at, campaigns.synced_at)"}

UPSERT = (
    f"INSERT INTO campaigns ({', '.join(CAMPAIGN_COLUMNS)}) VALUES {{values}} "
    f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = {_NEW.get(c, f'excluded.{c}')}" for c in CAMPAIGN_COLUMNS if c not in KEY)
    + " WHERE "
    + " OR ".join(f"campaigns.{c} IS DISTINCT FROM {_NEW.get(c, f'excluded.{c}')}" for c in COMPARED)
    + f" RETURNING {', '.join(KEY)}"
)
# The history row: the run, the key, each field declared with a history column,
# and what writing it did to the campaign's row (inserted, updated, unchanged).
HISTORY = {c.history: name for name, c in FIELDS.items() if c.history}  # history column -> field
METRICS_COLUMNS = ("run_id", *KEY, *HISTORY, "row_change")
# A campaign written twice in one run (a failed sync, then a successful one) keeps
# the strongest change: its row was inserted, or updated, by this run.
ROW_CHANGE = ("CASE WHEN 'inserted' IN (campaign_metrics.row_change, excluded.row_change) THEN 'inserted' "
              "WHEN 'updated' IN (campaign_metrics.row_change, excluded.row_change) THEN 'updated' "
              "ELSE excluded.row_change END")
METRICS_ON_CONFLICT = (f"ON CONFLICT (run_id, {', '.join(KEY)}) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in HISTORY) + f", row_change = {ROW_CHANGE}")
METRICS = f"INSERT INTO campaign_metrics ({', '.join(METRICS_COLUMNS)}) VALUES {{values}} {METRICS_ON_CONFLICT}"
# fetched_at says when the platform last sent the record, even when nothing in it changed.
TOUCH = "UPDATE campaigns SET fetched_at = %s WHERE client_id = %s AND campaign_id = %s AND fetched_at < %s"


def row_change(inserted: bool | None) -> str:
    """What an upsert did to a row: ``inserted`` (True), ``updated`` (False), ``unchanged`` (None)."""
    return "unchanged" if inserted is None else "inserted" if inserted else "updated"


def column_value(column: str, value: Any) -> Any:
    """A field's value as its column holds it (flags: a JSON array, or NULL when there is none)."""
    if COLUMN_TYPES[column] == "flags":
        return json.dumps(list(value)) if value else None
    return value


def campaign_row(item: CampaignItem, now: datetime) -> dict[str, Any]:
    """The ``campaigns`` row of ``item``, by column name, read through ItemAdapter."""
    adapter = ItemAdapter(item)
    return {**{name: column_value(name, adapter[name]) for name in FIELDS}, "updated_at": now}


REJECTED = ("INSERT INTO rejected_records (run_id, client_id, campaign_id, reason, payload, payload_sha1, seen_at) "
            "VALUES {values} ON CONFLICT (run_id, client_id, payload_sha1) DO NOTHING")
RUN_COLUMNS = ("run_id", "client_id", "started_at", "finished_at", "outcome", "outcome_reasons", "finish_reason",
               "campaigns_seen", "retries", "responses_429", "token_refreshes", "rate_limit", "rate_window", "stats")
# A resumed run writes its row again: effort counters add up over the attempts
# that recorded one, the start stays the first attempt's, the rest is the latest.
_RUN_ADDED = ("retries", "responses_429", "token_refreshes")
_RUN_UPDATE = {
    **{c: f"excluded.{c}" for c in RUN_COLUMNS[2:]},
    **{c: f"sync_runs.{c} + excluded.{c}" for c in _RUN_ADDED},
    "started_at": "CASE WHEN sync_runs.started_at < excluded.started_at "
                  "THEN sync_runs.started_at ELSE excluded.started_at END",
}
RUN = (f"INSERT INTO sync_runs ({', '.join(RUN_COLUMNS)}) VALUES {{values}} "
       "ON CONFLICT (run_id, client_id) DO UPDATE SET "
       + ", ".join(f"{c} = {expr}" for c, expr in _RUN_UPDATE.items()))
# Which process ran the run (see RunOrigin); a resumed run is the process that resumed it.
ORIGIN_COLUMNS = ("job_id", "node", "egg_version", "pid")
RUN_STARTED = (f"INSERT INTO sync_runs (run_id, client_id, started_at, outcome, {', '.join(ORIGIN_COLUMNS)}) "
               "VALUES {values} ON CONFLICT (run_id, client_id) DO UPDATE SET outcome = excluded.outcome, "
               "finished_at = NULL, " + ", ".join(f"{c} = excluded.{c}" for c in ORIGIN_COLUMNS))
# A run's counts are what its rows say, whatever happened to the process: a
# killed run, a resumed one and a replayed spool are counted alike.
_ROWS_OF_RUN = "FROM {table} x WHERE x.run_id = sync_runs.run_id AND x.client_id = sync_runs.client_id"
_COUNTED = {
    "campaigns_synced": ("campaign_metrics", "x.sync_status = 'synced'"),
    "campaigns_failed": ("campaign_metrics", "x.sync_status = 'failed'"),
    "rows_inserted": ("campaign_metrics", "x.row_change = 'inserted'"),
    "rows_updated": ("campaign_metrics", "x.row_change = 'updated'"),
    "rows_unchanged": ("campaign_metrics", "x.row_change = 'unchanged'"),
    "records_rejected": ("rejected_records", "1 = 1"),
}
COUNTS_FROM_ROWS = ", ".join(f"{column} = (SELECT COUNT(*) {_ROWS_OF_RUN.format(table=table)} AND {condition})"
                             for column, (table, condition) in _COUNTED.items())
# What a run that could not record its end is known to have seen: its rows.
SEEN_FROM_ROWS = ("campaigns_seen = (SELECT COUNT(*) " + _ROWS_OF_RUN.format(table="campaign_metrics")
                  + ") + (SELECT COUNT(*) " + _ROWS_OF_RUN.format(table="rejected_records") + ")")


class RunOrigin(NamedTuple):
    """Which process runs a run: a scrapyd job, or a crawl started by hand (host and pid)."""

    job_id: str | None = None
    node: str | None = None
    egg_version: str | None = None
    pid: int | None = None


class StoreError(Exception):
    """The database cannot be used (bad URL, schema newer than this code...)."""


class SchemaBehind(StoreError):
    """The schema is older than this code and this role may not bring it up to date."""


@dataclass(frozen=True)
class Waits:
    """Bounds on every wait of a statement: ``statement`` seconds in all, of which
    at most ``lock`` waiting for another session's lock (SQLite: its busy timeout).
    A statement that runs out is an error of the kind the caller retries."""

    statement: float = 30.0
    lock: float = 5.0


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
    # Exceptions meaning "the database refuses these rows for their content":
    # the rows are found and quarantined. Anything else is a fault of the
    # database (permission, connection, timeout, disk): retried, then spooled.
    refusal: tuple[type[BaseException], ...] = ()
    # Exceptions meaning "this role may not do that" (creating a table, for one).
    no_privilege: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self.conn: Any = None

    # -- backend hooks --------------------------------------------------
    def cause(self, exc: BaseException) -> str:
        """What kept a batch out: ``lock timeout``, ``statement timeout``, ``permission``, ``disk``
        or ``connection`` (the rest)."""
        return "connection"

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
        transaction); the others then find it applied. A schema already up to date
        is only read: a role that may read and write rows, and nothing more, crawls.
        """
        current = self.version()
        if current == target:
            return current
        try:
            return self._migrate(target)
        except self.no_privilege as exc:
            raise SchemaBehind(f"the database schema is at version {current} and this code needs {target}, "
                               f"but this database role may not change the schema ({first_line(exc)}): run "
                               "`scrapy migrate` as the database's owner") from None

    def _migrate(self, target: int) -> int:
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
            if target > current and target >= 3:  # applied_at exists from version 3 on
                self._execute(cur, "UPDATE schema_version SET applied_at = %s WHERE version > %s",
                              (datetime.now(timezone.utc), current))
            if target > current and target == schema.LATEST:
                for statement in schema.comments(self.dialect):
                    self._execute(cur, statement)
        return max(current, target)

    def version(self) -> int:
        """The schema version this database is at (0: none yet)."""
        try:
            with self._transaction("read") as cur:
                self._execute(cur, "SELECT MAX(version) FROM schema_version")
                return cur.fetchone()[0] or 0
        except Exception:  # noqa: BLE001 - no schema_version table: a new database (a dead one fails next)
            return 0

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
        except self.refusal as exc:  # refused for its content: find the rows
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
        if not run_id:
            raise StoreError("no run id: rows are written only for a run that holds its clients")
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
                changed = self._upsert(cur, run_id, [campaign_row(i, now) for i in latest.values()])
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
                    (run_id, r.client_id, r.campaign_id, r.reason, r.payload, r.payload_sha1, r.seen_at)
                    for r in rejected], fetch=False)
        return results

    def _upsert(self, cur: Any, run_id: str, rows: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
        """Upsert campaign ``rows`` and their history rows; returns the keys
        (client, campaign) inserted (True) or updated (False): the rest were unchanged."""
        # Keys that exist before the upsert tell inserted from updated; RETURNING
        # names the rows inserted or updated, so the rest were unchanged.
        existing = self._existing(cur, [(r["client_id"], r["campaign_id"]) for r in rows])
        values = [tuple(r[c] for c in CAMPAIGN_COLUMNS) for r in rows]
        returned = [dict(zip(KEY, r)) for r in self._insert_many(cur, UPSERT, values, fetch=True)]
        changed = {(r["client_id"], r["campaign_id"]): (r["client_id"], r["campaign_id"]) not in existing
                   for r in returned}
        history = [(run_id, *(r[k] for k in KEY), *(r[field] for field in HISTORY.values()),
                    row_change(changed.get((r["client_id"], r["campaign_id"])))) for r in rows]
        self._insert_many(cur, METRICS, history, fetch=False)
        for r in rows:
            if (r["client_id"], r["campaign_id"]) not in changed:
                self._execute(cur, TOUCH, (r["fetched_at"], r["client_id"], r["campaign_id"], r["fetched_at"]))
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

    def known_problems(self, client: str, run_id: str) -> set[str]:
        """What earlier runs of ``client`` quarantined: ``RejectedRecord.problem`` keys."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT DISTINCT COALESCE(campaign_id, 'sha1:' || payload_sha1), reason "
                               "FROM rejected_records WHERE client_id = %s AND run_id <> %s", (client, run_id))
            return {f"{subject}\n{reason}" for subject, reason in cur.fetchall()}

    def close_replayed(self, run_id: str, client: str, close: Callable[[str, str | None], tuple[str, str | None]],
                       ) -> None:
        """After a replay stored rows of (run_id, client): count the run again from its rows,
        and let ``close(outcome, reasons)`` settle its outcome when no run holds the client now."""
        with self._transaction() as cur:
            self._execute(cur, f"UPDATE sync_runs SET {COUNTS_FROM_ROWS} WHERE run_id = %s AND client_id = %s",
                          (run_id, client))
            self._execute(cur, "SELECT outcome, outcome_reasons FROM sync_runs WHERE run_id = %s AND client_id = %s",
                          (run_id, client))
            row = cur.fetchone()
        if row is None or not self.try_lock(client):  # no row, or a run of the client is going on
            return
        outcome, reasons = close(*row)
        with self._transaction() as cur:
            self._execute(cur, "UPDATE sync_runs SET outcome = %s, outcome_reasons = %s, "
                               "finished_at = COALESCE(finished_at, %s) WHERE run_id = %s AND client_id = %s",
                          (outcome, reasons, datetime.now(timezone.utc), run_id, client))

    def start_run(self, run_id: str, client: str, started_at: datetime, origin: RunOrigin = RunOrigin(),
                  ) -> list[tuple[str, datetime | None]]:
        """Record the run as ``running``; returns the runs of ``client`` that never finished
        (killed), now marked ``interrupted``. Call only while holding the client's lock."""
        with self._transaction() as cur:
            self._execute(cur, "SELECT run_id, started_at FROM sync_runs WHERE client_id = %s "
                               "AND outcome = 'running' AND run_id <> %s", (client, run_id))
            stale = [(row[0], self._timestamp(row[1])) for row in cur.fetchall()]
            if stale:
                self._execute(cur, "UPDATE sync_runs SET outcome = 'interrupted', outcome_reasons = "
                                   f"'the process ended before the run did', {COUNTS_FROM_ROWS}, {SEEN_FROM_ROWS} "
                                   "WHERE client_id = %s AND outcome = 'running' AND run_id <> %s", (client, run_id))
            self._insert_many(cur, RUN_STARTED, [(run_id, client, started_at, "running", *origin)], fetch=False)
        return stale

    def record_skipped(self, run_id: str, client: str, at: datetime, origin: RunOrigin = RunOrigin()) -> str:
        """Record that this run skipped ``client`` (another run holds its lock); returns who holds it."""
        with self._transaction() as cur:
            self._execute(cur, "SELECT run_id, job_id, node FROM sync_runs WHERE client_id = %s AND outcome = "
                               "'running' AND run_id <> %s ORDER BY started_at DESC LIMIT 1", (client, run_id))
            holder = cur.fetchone()
            reason = "another run holds the client" + (
                f": run {holder[0]}" + (f", job {holder[1]} on {holder[2]}" if holder[1] else "") if holder else "")
            self._execute(cur, "SELECT 1 FROM sync_runs WHERE run_id = %s AND client_id = %s", (run_id, client))
            if cur.fetchone() is None:  # a resumed run keeps the row of its first attempt
                self._insert_many(cur, RUN_STARTED, [(run_id, client, at, "skipped", *origin)], fetch=False)
                self._execute(cur, "UPDATE sync_runs SET finished_at = %s, outcome_reasons = %s, finish_reason = "
                                   "'skipped' WHERE run_id = %s AND client_id = %s", (at, reason, run_id, client))
        return reason

    def running(self) -> list[tuple[str, str | None]]:
        """(client, job id) of every run recorded as running: going on, or killed and not yet marked."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT client_id, job_id FROM sync_runs WHERE outcome = 'running'")
            return [(row[0], row[1]) for row in cur.fetchall()]

    def runs_of_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """The runs the given scrapyd jobs recorded, oldest first."""
        if not job_ids:
            return []
        columns = ("client_id", "job_id", "node", "outcome", "outcome_reasons", "started_at")
        with self._transaction("read") as cur:
            self._execute(cur, f"SELECT {', '.join(columns)} FROM sync_runs WHERE job_id IN "
                               f"({', '.join(['%s'] * len(job_ids))}) ORDER BY started_at", job_ids)
            return [dict(zip(columns, row)) for row in cur.fetchall()]

    def record_run(self, row: dict[str, Any]) -> None:
        """Complete the ``sync_runs`` row of (run_id, client_id)."""
        values = tuple(json.dumps(row[c], default=str, sort_keys=True) if c == "stats" else row.get(c)
                       for c in RUN_COLUMNS)
        with self._transaction() as cur:
            self._insert_many(cur, RUN, [values], fetch=False)
            self._execute(cur, f"UPDATE sync_runs SET {COUNTS_FROM_ROWS} WHERE run_id = %s AND client_id = %s",
                          (row["run_id"], row["client_id"]))

    def last_runs(self, client: str | None, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` runs (of ``client``, or of every client), newest first."""
        columns = ("run_id", "client_id", "started_at", "finished_at", "outcome", "outcome_reasons", "campaigns_seen",
                   "campaigns_synced", "campaigns_failed", "rows_inserted", "rows_updated", "records_rejected",
                   "job_id", "node", "egg_version", "pid")
        where, params = ("WHERE client_id = %s ", [client]) if client else ("", [])
        with self._transaction("read") as cur:
            self._execute(cur, f"SELECT {', '.join(columns)} FROM sync_runs {where}"
                               "ORDER BY started_at DESC LIMIT %s", [*params, limit])
            rows = [dict(zip(columns, row)) for row in cur.fetchall()]
        for row in rows:
            row["started_at"], row["finished_at"] = map(self._timestamp, (row["started_at"], row["finished_at"]))
        return rows

    def last_success(self, client: str) -> datetime | None:
        """When the client's last successful run finished."""
        with self._transaction("read") as cur:
            self._execute(cur, "SELECT MAX(finished_at) FROM sync_runs WHERE client_id = %s "
                               "AND outcome = 'succeeded'", (client,))
            return self._timestamp(cur.fetchone()[0])

    def try_lock(self, client: str) -> bool:
        """Take the client's lock for as long as this store is open; False if another run holds it."""
        raise NotImplementedError

    def locks_lost(self) -> list[str]:
        """Clients whose lock this store held and no longer holds (forgotten: never taken again)."""
        raise NotImplementedError

    # -- connection -------------------------------------------------------
    def _cursor(self) -> Any:
        if self.conn is None:  # lost earlier; raises the backend's transient error while down
            self.connect()
        return self.conn.cursor()

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # noqa: BLE001 - the connection itself may be gone; reconnect() handles that
            pass

    def _close_cursor(self, cur: Any) -> None:
        try:
            cur.close()
        except Exception:  # noqa: BLE001 - a cursor of a lost connection: nothing to close
            pass

    def reconnect(self) -> None:
        self.close()
        self.connect()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - already closed by the server or the network
                pass
            self.conn = None
