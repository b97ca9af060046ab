"""Run records: a ``sync_runs`` row per client per run, and the questions asked of them. A run's counts are
what its rows say, whatever happened to its process."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .connection import Connection

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


class RunQueries(Connection):
    def done_campaigns(self, run_ids: list[str], client: str) -> set[str]:
        """Campaigns these runs already stored as synced (a resumed run's, or those it continues)."""
        return {row[0] for row in self._rows(
            f"SELECT campaign_id FROM campaign_metrics WHERE run_id IN ({', '.join(['%s'] * len(run_ids))}) AND "
            "client_id = %s AND sync_status = 'synced'", (*run_ids, client))}

    def known_problems(self, client: str, run_id: str) -> set[str]:
        """What earlier runs of ``client`` quarantined: ``RejectedRecord.problem`` keys."""
        return {f"{subject}\n{reason}" for subject, reason in self._rows(
            "SELECT DISTINCT COALESCE(campaign_id, 'sha1:' || payload_sha1), reason FROM rejected_records "
            "WHERE client_id = %s AND run_id <> %s", (client, run_id))}

    def close_replayed(self, run_id: str, client: str, close: Callable[[str, str | None], tuple[str, str | None]],
                       ) -> None:
        """After a replay stored rows of (run_id, client): count the run again from its rows,
        and let ``close(outcome, reasons)`` settle its outcome when no run holds the client now."""
        with self._transaction() as cur:
            self._execute(cur, f"UPDATE sync_runs SET {COUNTS_FROM_ROWS} WHERE run_id = %s AND client_id = %s",
                          (run_id, client))
            row = self._execute(cur, "SELECT outcome, outcome_reasons FROM sync_runs WHERE run_id = %s AND "
                                     "client_id = %s", (run_id, client)).fetchone()
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
            stale = [(row[0], self._timestamp(row[1])) for row in self._execute(
                cur, "SELECT run_id, started_at FROM sync_runs WHERE client_id = %s AND outcome = 'running' AND "
                     "run_id <> %s", (client, run_id)).fetchall()]
            if stale:
                self._execute(cur, "UPDATE sync_runs SET outcome = 'interrupted', outcome_reasons = "
                                   f"'the process ended before the run did', {COUNTS_FROM_ROWS}, {SEEN_FROM_ROWS} "
                                   "WHERE client_id = %s AND outcome = 'running' AND run_id <> %s", (client, run_id))
            self._insert_many(cur, RUN_STARTED, [(run_id, client, started_at, "running", *origin)], fetch=False)
        return stale

    def record_skipped(self, run_id: str, client: str, at: datetime, origin: RunOrigin = RunOrigin(),
                       reason: str = "") -> str:
        """Record that this run skipped ``client`` (by default: another run holds its lock); returns why."""
        with self._transaction() as cur:
            if not reason:
                holder = self._execute(cur, "SELECT run_id, job_id, node FROM sync_runs WHERE client_id = %s AND "
                                            "outcome = 'running' AND run_id <> %s ORDER BY started_at DESC LIMIT 1",
                                       (client, run_id)).fetchone()
                reason = "another run holds the client" + (
                    f": run {holder[0]}" + (f", job {holder[1]} on {holder[2]}" if holder[1] else "") if holder else "")
            # A resumed run keeps the row of its first attempt.
            self._execute(cur, "INSERT INTO sync_runs (run_id, client_id, started_at, finished_at, outcome, "
                               f"outcome_reasons, finish_reason, {', '.join(ORIGIN_COLUMNS)}) VALUES (%s, %s, %s, %s, "
                               "'skipped', %s, 'skipped', %s, %s, %s, %s) ON CONFLICT (run_id, client_id) DO NOTHING",
                          (run_id, client, at, at, reason, *origin))
        return reason

    def running(self) -> list[tuple[str, str | None]]:
        """(client, job id) of every run recorded as running: going on, or killed and not yet marked."""
        return self._rows("SELECT client_id, job_id FROM sync_runs WHERE outcome = 'running'")

    def runs_of_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """The runs the given scrapyd jobs recorded, oldest first."""
        columns = ("client_id", "job_id", "node", "outcome", "outcome_reasons", "started_at", "run_id")
        return [dict(zip(columns, row)) for row in self._rows(
            f"SELECT {', '.join(columns)} FROM sync_runs WHERE job_id IN ({', '.join(['%s'] * len(job_ids))}) "
            "ORDER BY started_at", job_ids)] if job_ids else []

    def record_run(self, row: dict[str, Any]) -> tuple[int, int]:
        """Complete the ``sync_runs`` row of (run_id, client_id); returns the campaigns it counts
        synced and failed (a resumed run's include those of its earlier attempts)."""
        values = tuple(json.dumps(row[c], default=str, sort_keys=True) if c == "stats" else row.get(c)
                       for c in RUN_COLUMNS)
        with self._transaction() as cur:
            self._insert_many(cur, RUN, [values], fetch=False)
            return self._execute(cur, f"UPDATE sync_runs SET {COUNTS_FROM_ROWS} WHERE run_id = %s AND client_id = %s "
                                      "RETURNING campaigns_synced, campaigns_failed",
                                 (row["run_id"], row["client_id"])).fetchone()

    def last_runs(self, client: str | None, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` runs (of ``client``, or of every client), newest first."""
        columns = ("run_id", "client_id", "started_at", "finished_at", "outcome", "outcome_reasons", "campaigns_seen",
                   "campaigns_synced", "campaigns_failed", "rows_inserted", "rows_updated", "records_rejected",
                   "job_id", "node", "egg_version", "pid", "stats")
        where, params = ("WHERE client_id = %s ", [client]) if client else ("", [])
        rows = [dict(zip(columns, row)) for row in self._rows(
            f"SELECT {', '.join(columns)} FROM sync_runs {where}ORDER BY started_at DESC LIMIT %s", [*params, limit])]
        for row in rows:
            row["started_at"], row["finished_at"] = map(self._timestamp, (row["started_at"], row["finished_at"]))
            if isinstance(row["stats"], str):  # SQLite keeps JSON as text
                row["stats"] = json.loads(row["stats"])
        return rows

    def client_states(self) -> dict[str, dict[str, Any]]:
        """Each client's last success and its last run that was not skipped (its outcome, reasons
        and start): whether it is stale, and why."""
        states: dict[str, dict[str, Any]] = {}
        for client, last in self._rows("SELECT client_id, MAX(finished_at) FROM sync_runs WHERE outcome = "
                                       "'succeeded' GROUP BY client_id"):
            states[client] = {"last_success": self._timestamp(last)}
        for client, outcome, reasons, started in self._rows(
                "SELECT client_id, outcome, outcome_reasons, started_at FROM sync_runs r WHERE outcome <> 'skipped' "
                "AND started_at = (SELECT MAX(started_at) FROM sync_runs s WHERE s.client_id = r.client_id AND "
                "s.outcome <> 'skipped')"):
            states.setdefault(client, {"last_success": None}).update(
                outcome=outcome, reasons=reasons, started_at=self._timestamp(started))
        return states

    def last_success(self, client: str) -> datetime | None:
        [(last,)] = self._rows("SELECT MAX(finished_at) FROM sync_runs WHERE client_id = %s AND outcome = "
                               "'succeeded'", (client,))
        return self._timestamp(last)

    # A batch of rows by their physical id (SQLite's rowid, PostgreSQL's ctid): no index needed.
    ROW_ID = "rowid"
    PRUNE_BATCH = 5000  # rows per transaction: a concurrent run's write waits at most one batch

    def prune(self, client: str, before: datetime) -> tuple[int, int]:
        """Remove the client's history rows captured and run records finished before ``before``, a
        batch per transaction; returns (history rows, run records) removed."""
        removed = []
        for table, column in (("campaign_metrics", "captured_at"), ("sync_runs", "finished_at")):
            count = 0
            while True:
                with self._transaction() as cur:
                    self._execute(cur, f"DELETE FROM {table} WHERE {self.ROW_ID} IN (SELECT {self.ROW_ID} FROM "
                                       f"{table} WHERE client_id = %s AND {column} < %s LIMIT {self.PRUNE_BATCH})",
                                  (client, before))
                    count += cur.rowcount
                if cur.rowcount < self.PRUNE_BATCH:
                    break
            removed.append(count)
        return removed[0], removed[1]

