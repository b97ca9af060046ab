"""The database schema, as numbered migrations shared by SQLite and PostgreSQL.

``{ts}``, ``{money}``, ``{json}``, ``{bigint}`` and ``{id}`` are filled with each
backend's types. A database records the versions applied in ``schema_version``;
``migrate`` applies the missing ones in order, one process at a time, so an
older database upgrades in place. Never edit a released migration: add the next one.
"""

from __future__ import annotations

TYPES = {
    "sqlite": {"ts": "TEXT", "money": "NUMERIC", "json": "TEXT", "bigint": "INTEGER",
               "id": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"ts": "TIMESTAMPTZ", "money": "NUMERIC(16, 2)", "json": "JSONB", "bigint": "BIGINT",
                   "id": "BIGSERIAL PRIMARY KEY"},
}

MIGRATIONS: list[tuple[int, list[str]]] = [
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
]

LATEST = MIGRATIONS[-1][0]


def statements(dialect: str, version: int) -> list[str]:
    types = TYPES[dialect]
    for number, sqls in MIGRATIONS:
        if number == version:
            return [sql.format(**types) for sql in sqls]
    raise KeyError(version)
