"""The schema: numbered migrations shared by both backends (never edit a released one: add the next), what
each table and column holds (:data:`DOCS`, also PostgreSQL's comments), and applying what a database lacks."""

from __future__ import annotations

from datetime import datetime, timezone

from .connection import Connection, SchemaBehind, StoreError, first_line

TYPES = {
    "sqlite": {"ts": "TEXT", "money": "NUMERIC", "json": "TEXT", "bigint": "INTEGER",
               "id": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"ts": "TIMESTAMPTZ", "money": "NUMERIC(16, 2)", "json": "JSONB", "bigint": "BIGINT",
                   "id": "BIGSERIAL PRIMARY KEY"},
}

MIGRATIONS: list[tuple[int, list[str | dict[str, str]]]] = [
    (1, [
        # Current state: one row per (client, campaign), upserted.
        """CREATE TABLE campaigns (
            client_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            budget {money} NOT NULL,
            impressions {bigint} NOT NULL,
            clicks {bigint} NOT NULL,
            conversions {bigint} NOT NULL,
            created_at {ts} NOT NULL,
            sync_status TEXT NOT NULL,
            synced_at {ts},
            sync_error TEXT,
            fetched_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            PRIMARY KEY (client_id, campaign_id)
        )""",
        # Performance history: one row per campaign per run.
        """CREATE TABLE campaign_metrics (
            run_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            captured_at {ts} NOT NULL,
            status TEXT NOT NULL,
            budget {money} NOT NULL,
            impressions {bigint} NOT NULL,
            clicks {bigint} NOT NULL,
            conversions {bigint} NOT NULL,
            sync_status TEXT NOT NULL,
            PRIMARY KEY (run_id, client_id, campaign_id)
        )""",
        "CREATE INDEX campaign_metrics_history ON campaign_metrics (client_id, campaign_id, captured_at)",
        # One row per client per run.
        """CREATE TABLE sync_runs (
            run_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            started_at {ts} NOT NULL,
            finished_at {ts},
            outcome TEXT,
            finish_reason TEXT,
            campaigns_seen {bigint} NOT NULL DEFAULT 0,
            campaigns_synced {bigint} NOT NULL DEFAULT 0,
            campaigns_failed {bigint} NOT NULL DEFAULT 0,
            rows_inserted {bigint} NOT NULL DEFAULT 0,
            rows_updated {bigint} NOT NULL DEFAULT 0,
            rows_unchanged {bigint} NOT NULL DEFAULT 0,
            records_rejected {bigint} NOT NULL DEFAULT 0,
            retries {bigint} NOT NULL DEFAULT 0,
            responses_429 {bigint} NOT NULL DEFAULT 0,
            token_refreshes {bigint} NOT NULL DEFAULT 0,
            stats {json},
            PRIMARY KEY (run_id, client_id)
        )""",
        # Quarantine: what failed validation, verbatim, with the reason.
        """CREATE TABLE rejected_records (
            id {id},
            run_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload TEXT NOT NULL,
            seen_at {ts} NOT NULL
        )""",
    ]),
    (2, [
        # A resumed run lists again: quarantine each bad record once per run.
        "ALTER TABLE rejected_records ADD COLUMN payload_sha1 TEXT",
        "CREATE UNIQUE INDEX rejected_records_once ON rejected_records (run_id, client_id, payload_sha1)",
    ]),
    (3, [
        # Keep what the platform sends: the record as received, and what looked wrong in it.
        "ALTER TABLE campaigns ADD COLUMN raw {json}",
        "ALTER TABLE campaigns ADD COLUMN quality_flags TEXT",
        "ALTER TABLE campaign_metrics ADD COLUMN quality_flags TEXT",
        # The id a quarantined record was sent with, when it had one.
        "ALTER TABLE rejected_records ADD COLUMN campaign_id TEXT",
        # Why a run is not 'succeeded'; a run row exists from the start ('running').
        "ALTER TABLE sync_runs ADD COLUMN outcome_reasons TEXT",
        # One row per version: a second process applying the same migration fails loudly.
        "CREATE TABLE schema_version_keyed (version INTEGER PRIMARY KEY, applied_at {ts})",
        "INSERT INTO schema_version_keyed (version) SELECT DISTINCT version FROM schema_version",
        "DROP TABLE schema_version",
        "ALTER TABLE schema_version_keyed RENAME TO schema_version",
    ]),
    (4, [
        # A client's last runs, newest first (scrapy runs, the dashboard).
        "CREATE INDEX sync_runs_client_started ON sync_runs (client_id, started_at)",
        # Flags as a JSON array instead of comma-separated text.
        *({"postgresql": f"ALTER TABLE {table} ALTER COLUMN quality_flags TYPE JSONB USING CASE WHEN "
                         "quality_flags IS NULL OR quality_flags = '' THEN NULL "
                         "ELSE to_jsonb(string_to_array(quality_flags, ',')) END",
           "sqlite": f"UPDATE {table} SET quality_flags = CASE WHEN quality_flags IS NULL OR quality_flags = '' "
                     """THEN NULL ELSE '["' || replace(quality_flags, ',', '", "') || '"]' END"""}
          for table in ("campaigns", "campaign_metrics")),
    ]),
    (5, [
        # A value the platform has not sent (yet) is NULL, not a refused record; SQLite keeps
        # budgets as text, exactly (its NUMERIC keeps 15 significant digits, NUMERIC(16, 2) 16).
        {"postgresql": "ALTER TABLE campaigns " + ", ".join(
            f"ALTER COLUMN {c} DROP NOT NULL"
            for c in ("name", "status", "budget", "impressions", "clicks", "conversions", "created_at")),
         "sqlite": """CREATE TABLE campaigns_v5 (
            client_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            name TEXT,
            status TEXT,
            budget TEXT,
            impressions INTEGER,
            clicks INTEGER,
            conversions INTEGER,
            created_at TEXT,
            sync_status TEXT NOT NULL,
            synced_at TEXT,
            sync_error TEXT,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            raw TEXT,
            quality_flags TEXT,
            PRIMARY KEY (client_id, campaign_id)
        )"""},
        {"postgresql": "ALTER TABLE campaign_metrics " + ", ".join(
            f"ALTER COLUMN {c} DROP NOT NULL" for c in ("status", "budget", "impressions", "clicks", "conversions")),
         "sqlite": """CREATE TABLE campaign_metrics_v5 (
            run_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            status TEXT,
            budget TEXT,
            impressions INTEGER,
            clicks INTEGER,
            conversions INTEGER,
            sync_status TEXT NOT NULL,
            quality_flags TEXT,
            PRIMARY KEY (run_id, client_id, campaign_id)
        )"""},
        *({"sqlite": sql} for sql in (
            "INSERT INTO campaigns_v5 SELECT client_id, campaign_id, name, status, printf('%.2f', budget), "
            "impressions, clicks, conversions, created_at, sync_status, synced_at, sync_error, fetched_at, "
            "updated_at, raw, quality_flags FROM campaigns",
            "DROP TABLE campaigns",
            "ALTER TABLE campaigns_v5 RENAME TO campaigns",
            "INSERT INTO campaign_metrics_v5 SELECT run_id, client_id, campaign_id, captured_at, status, "
            "printf('%.2f', budget), impressions, clicks, conversions, sync_status, quality_flags "
            "FROM campaign_metrics",
            "DROP TABLE campaign_metrics",
            "ALTER TABLE campaign_metrics_v5 RENAME TO campaign_metrics",
            "CREATE INDEX campaign_metrics_history ON campaign_metrics (client_id, campaign_id, captured_at)",
        )),
        # What writing the campaign did to its row in this run: the run's counts are queries.
        "ALTER TABLE campaign_metrics ADD COLUMN row_change TEXT",
        # A client's earlier quarantines (is this one new?).
        "CREATE INDEX rejected_records_client ON rejected_records (client_id, campaign_id)",
        # The rate budget in force at the end of the run (what the platform's signals said, or 429s left).
        "ALTER TABLE sync_runs ADD COLUMN rate_limit {bigint}",
        {"postgresql": "ALTER TABLE sync_runs ADD COLUMN rate_window DOUBLE PRECISION",
         "sqlite": "ALTER TABLE sync_runs ADD COLUMN rate_window REAL"},
    ]),
    (6, [
        # Which process ran it: a scrapyd job (its id, node and egg version) or a crawl
        # started by hand (its host and process id).
        "ALTER TABLE sync_runs ADD COLUMN job_id TEXT",
        "ALTER TABLE sync_runs ADD COLUMN node TEXT",
        "ALTER TABLE sync_runs ADD COLUMN egg_version TEXT",
        "ALTER TABLE sync_runs ADD COLUMN pid INTEGER",
        # The dispatcher asks which clients are running, and what each of its jobs did.
        "CREATE INDEX sync_runs_running ON sync_runs (outcome, client_id)",
        "CREATE INDEX sync_runs_job ON sync_runs (job_id)",
    ]),
    (7, [
        # On PostgreSQL the per-client lock is a lease the run renews: it survives a reconnect and a
        # pooler, and has no lock-table ceiling (SQLite's lock is a file lock, and needs no table).
        {"postgresql": """CREATE TABLE client_leases (
            client_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at {ts} NOT NULL
        )"""},
    ]),
    (8, [
        # A campaign gone from a complete listing is marked, never deleted: its history stays.
        "ALTER TABLE campaigns ADD COLUMN removed_at {ts}",
        # The top-level fields of a client's records at its last complete listing: what is new, or gone.
        """CREATE TABLE client_fields (
            client_id TEXT NOT NULL,
            field TEXT NOT NULL,
            in_every INTEGER NOT NULL,
            PRIMARY KEY (client_id, field)
        )""",
    ]),
    (9, [
        # Every run reads its clients' last success: one index entry, however many runs are kept.
        "CREATE INDEX sync_runs_last_success ON sync_runs (client_id, finished_at) WHERE outcome = 'succeeded'",
    ]),
]

LATEST = MIGRATIONS[-1][0]

_RUN = "of this run, for this client"
DOCS: dict[str, tuple[str, dict[str, str]]] = {
    "campaigns": ("Current state of every campaign of every client: one row per (client_id, campaign_id), "
                  "upserted; rewritten only when something changed", {
        "client_id": "the platform's client id (the X-Client-ID header)",
        "campaign_id": "the campaign's id on the platform",
        "name": "the campaign's name, exactly as sent; NULL: not sent (flagged missing_name)",
        "status": "the campaign's status as sent; statuses outside the documented set are kept and flagged; "
                  "NULL: not sent",
        "budget": "the budget, exact to the cent from a number or a numeric string (more decimals: rounded and "
                  "flagged budget_rounded; raw has it as sent); NULL: not sent. SQLite keeps it as text",
        "impressions": "impressions, as sent (numeric strings converted); NULL: not sent yet, never 0",
        "clicks": "clicks, as sent (numeric strings converted); NULL: not sent yet",
        "conversions": "conversions, as sent (numeric strings converted); NULL: not sent yet",
        "created_at": "when the campaign was created on the platform, in UTC (UTC when sent without a zone, and "
                      "flagged); NULL: not sent",
        "raw": "the record exactly as the platform sent it, unknown fields included (JSON); a change in it, "
               "in any field, changes the row",
        "quality_flags": "what looked implausible, was missing or was rounded, but was stored (a JSON array of flag "
                         "names); NULL: nothing",
        "sync_status": "synced or failed: the outcome of the last run's sync call for the campaign",
        "synced_at": "when the platform last confirmed a sync (kept when a later sync fails)",
        "sync_error": "why the last sync failed, when it did",
        "fetched_at": "when the platform last sent the record (updated even when nothing in it changed)",
        "updated_at": "when this row last changed",
        "removed_at": "when a complete listing first lacked the campaign (removed or archived at the source); "
                      "NULL: listed by the last complete listing. Cleared when it is listed again",
    }),
    "campaign_metrics": ("Performance history: one row per campaign per run, the time series to chart", {
        "run_id": "the run that fetched it (sync_runs.run_id)",
        "client_id": "the platform's client id",
        "campaign_id": "the campaign's id on the platform",
        "captured_at": "when the platform sent these values",
        "status": "the campaign's status then",
        "budget": "the budget then",
        "impressions": "impressions then",
        "clicks": "clicks then",
        "conversions": "conversions then",
        "quality_flags": "what looked implausible, was missing or was rounded then (JSON array); NULL: nothing",
        "sync_status": "synced or failed " + _RUN,
        "row_change": "inserted, updated or unchanged: what storing it did to the campaign's row in this run "
                      "(the strongest, when stored twice); sync_runs counts these",
    }),
    "sync_runs": ("One row per client per run, written as 'running' at the start and completed at the end", {
        "run_id": "the run's id (a resumed run keeps it)",
        "client_id": "the platform's client id",
        "started_at": "when the run took the client's lock",
        "finished_at": "when the client's last answer came; NULL while running",
        "outcome": "running, succeeded, partial, failed, skipped, interrupted (see docs/reference.md, outcomes); "
                   "skipped: another run held the client's lock",
        "outcome_reasons": "why the outcome is not succeeded, as the last log line said it",
        "finish_reason": "how the crawl ended (finished, shutdown, auth_failed...)",
        "campaigns_seen": "distinct campaigns listed " + _RUN + " (a run that never recorded its end: its "
                          "campaign_metrics and rejected_records rows)",
        "campaigns_synced": "campaign_metrics rows " + _RUN + " with sync_status synced (every attempt, replays "
                            "included)",
        "campaigns_failed": "campaign_metrics rows " + _RUN + " with sync_status failed",
        "rows_inserted": "campaign_metrics rows " + _RUN + " with row_change inserted",
        "rows_updated": "campaign_metrics rows " + _RUN + " with row_change updated",
        "rows_unchanged": "campaign_metrics rows " + _RUN + " with row_change unchanged",
        "records_rejected": "rejected_records rows " + _RUN,
        "retries": "API requests retried " + _RUN,
        "responses_429": "429 answers " + _RUN,
        "token_refreshes": "bearer tokens obtained " + _RUN,
        "rate_limit": "requests per rate_window in force at the end " + _RUN + ": the platform's stated limit "
                      "(rate-limit headers), what 429s left, or ADCRAWLER_RATE_LIMIT",
        "rate_window": "the window of rate_limit, in seconds",
        "job_id": "the scrapyd job that ran it (NULL: a crawl started by hand)",
        "node": "the scrapyd node the dispatcher scheduled the job on, or the host of a crawl started by hand",
        "egg_version": "the project version (egg) scrapyd ran; NULL for a crawl started by hand",
        "pid": "the crawl's process id on that node or host",
        "stats": "the run's stats for this client, as the stats file has them (JSON)",
    }),
    "rejected_records": ("Quarantine: records that could not be stored, verbatim, with the reason", {
        "id": "row number",
        "run_id": "the run that met it",
        "client_id": "the platform's client id",
        "campaign_id": "the id the record was sent with, when it had one",
        "reason": "why it could not be stored",
        "payload": "the record exactly as sent (JSON text)",
        "payload_sha1": "the payload's SHA-1: a record is quarantined once per run",
        "seen_at": "when the platform sent it",
    }),
    "client_fields": ("The top-level fields of a client's records at its last complete listing", {
        "client_id": "the platform's client id",
        "field": "a field name, as sent",
        "in_every": "1: every record had it; 0: some did",
    }),
    "client_leases": ("PostgreSQL only: which run holds each client, until when (renewed while it runs)", {
        "client_id": "the platform's client id",
        "run_id": "the run that holds it",
        "holder": "what runs it: a scrapyd job and node, or a host and process id",
        "expires_at": "when the lease ends unless the run renews it: after that another run may take the client",
    }),
    "schema_version": ("The migrations applied to this database", {
        "version": "a migration's number (adcrawler/store/migrations.py)",
        "applied_at": "when it was applied (NULL for migrations applied before version 3 existed)",
    }),
}


def statements(dialect: str, version: int) -> list[str]:
    sqls = ({dialect: sql} if isinstance(sql, str) else sql for sql in dict(MIGRATIONS)[version])
    return [sql[dialect].format(**TYPES[dialect]) for sql in sqls if dialect in sql]


class Migrations(Connection):
    def migrate(self, target: int = LATEST) -> int:
        """Apply the migrations this database lacks, up to ``target``; returns the version now in force.
        Processes starting together apply each migration once (see ``_begin``); a schema already up to
        date is only read, so a role that may only read and write rows crawls."""
        current = self.version()
        if current == target:
            return current
        try:
            with self._transaction("migrate") as cur:
                self._execute(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
                done = self._execute(cur, "SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                if done > LATEST:
                    raise StoreError(f"database schema version {done} is newer than this code ({LATEST})")
                for version in range(done + 1, target + 1):
                    for statement in statements(self.dialect, version):
                        self._execute(cur, statement)
                    self._execute(cur, "INSERT INTO schema_version (version) VALUES (%s)", (version,))
                if target > done and target >= 3:  # applied_at exists from version 3 on
                    self._execute(cur, "UPDATE schema_version SET applied_at = %s WHERE version > %s",
                                  (datetime.now(timezone.utc), done))
                if target > done and target == LATEST and self.dialect == "postgresql":
                    for table, (doc, columns) in DOCS.items():  # DOCS as PostgreSQL's comments
                        self._execute(cur, f"COMMENT ON TABLE {table} IS %s", (doc,))
                        for column, text in columns.items():
                            self._execute(cur, f"COMMENT ON COLUMN {table}.{column} IS %s", (text,))
            return max(done, target)
        except self.no_privilege as exc:
            raise SchemaBehind(f"the database schema is at version {current} and this code needs {target}, "
                               f"but this database role may not change the schema ({first_line(exc)}): run "
                               "`scrapy migrate` as the database's owner") from None

    def version(self) -> int:
        """The schema version this database is at (0: none yet)."""
        try:
            return self._rows("SELECT MAX(version) FROM schema_version")[0][0] or 0
        except Exception:  # noqa: BLE001 - no schema_version table: a new database (a dead one fails next)
            return 0
