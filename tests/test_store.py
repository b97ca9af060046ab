"""The storage layer on both backends: upserts, refused rows, migrations, locks, run records, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from adcrawler.disk import append_spool
from adcrawler.model import CampaignItem, RejectedRecord
from adcrawler.store import StoreError, migrations, open_store
from harness.runner import ROOT

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def item(n: int, client: str = "acme", **changes) -> CampaignItem:
    record = {"id": f"campaign_{n}", "name": f"Campaign {n}", "objective": "REACH"}
    # Built without validation: some tests store what validation would refuse.
    base = CampaignItem.model_construct(client_id=client, campaign_id=f"campaign_{n}", name=f"Campaign {n}",
                                        status="active", budget=Decimal("100.50"), impressions=1000 + n, clicks=10,
                                        conversions=1,
                                        created_at=T0, raw=json.dumps(record), quality_flags=(), fetched_at=T0,
                                        sync_status="synced", synced_at=T0, sync_error=None)
    return base.model_copy(update=changes)


def rejected(payload: str = '{"id": "campaign_; DROP", "clicks": -5}', reason: str = "bad id") -> RejectedRecord:
    return RejectedRecord(client_id="acme", campaign_id="campaign_; DROP", reason=reason, payload=payload, seen_at=T0)


@pytest.fixture
def store(db):
    s = open_store(db.url, str(db.workdir))
    s.migrate()
    yield s
    s.close()


def test_upsert_reports_inserted_updated_unchanged(store, db):
    batch = [item(1), item(2), item(1, client="globex")]
    first = store.write_batch("run1", batch)
    assert (first["acme"].inserted, first["globex"].inserted) == (2, 1)
    again = store.write_batch("run1", batch)
    assert again["acme"].unchanged == 2 and again["acme"].updated == 0
    changed = store.write_batch("run2", [item(1, clicks=11), item(2)])
    assert (changed["acme"].updated, changed["acme"].unchanged) == (1, 1)
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 3
    assert db.scalar("SELECT clicks FROM campaigns WHERE campaign_id = 'campaign_1' AND client_id = 'acme'") == 11
    # History: one row per campaign per run, idempotent within a run.
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 5
    # Same campaign id under two clients: each row is judged on its own.
    mixed = store.write_batch("run3", [item(1, client="globex", clicks=99), item(1, clicks=11)])
    assert (mixed["globex"].updated, mixed["acme"].unchanged) == (1, 1)


def test_unchanged_rows_are_not_rewritten(store, db):
    store.write_batch("run1", [item(1)])
    stamp = db.scalar("SELECT updated_at FROM campaigns")
    store.write_batch("run2", [item(1)])
    assert db.scalar("SELECT updated_at FROM campaigns") == stamp


def test_failed_sync_keeps_the_last_successful_sync_time(store, db):
    store.write_batch("run1", [item(1)])
    store.write_batch("run2", [item(1, sync_status="failed", synced_at=None, sync_error="HTTP 503")])
    row = db.rows("SELECT sync_status, sync_error, synced_at FROM campaigns")[0]
    assert row[:2] == ("failed", "HTTP 503") and row[2] is not None


def test_rejected_records_are_kept_verbatim(store, db):
    store.write_batch("run1", [rejected()])
    assert db.rows("SELECT client_id, campaign_id, reason, payload FROM rejected_records") == [
        ("acme", "campaign_; DROP", "bad id", rejected().payload)]


def test_raw_record_and_flags_are_stored_beside_the_typed_columns(store, db):
    store.write_batch("run1", [item(1, quality_flags=("clicks_exceed_impressions", "unknown_status"))])
    raw, flags = db.rows("SELECT raw, quality_flags FROM campaigns")[0]
    assert (json.loads(raw) if isinstance(raw, str) else raw)["objective"] == "REACH"
    assert db.json(flags) == ["clicks_exceed_impressions", "unknown_status"]  # a JSON array on both backends
    assert db.scalar("SELECT quality_flags FROM campaign_metrics") == flags


def test_text_is_stored_exactly_as_sent(store, db):
    awkward = 'tab\there, new\nline, cr\r, back\\slash, \\N, "quotes", \'; DROP TABLE campaigns; --, ünï 🚀'
    record = {"id": "campaign_1", "name": awkward, "notes": "\\N\t\\"}
    store.write_batch("run1", [item(1, name=awkward, sync_error="\\N", raw=json.dumps(record), status="")])
    name, error, status, raw = db.rows("SELECT name, sync_error, status, raw FROM campaigns")[0]
    assert (name, error, status) == (awkward, "\\N", "")
    assert (json.loads(raw) if isinstance(raw, str) else raw) == record
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE synced_at IS NOT NULL") == 1


# Rows no column can hold, as the database says it: each refused alone, the rest committed.
REFUSED = {
    "sqlite": [{"impressions": 10**20}, {"name": "lone \ud800 surrogate"}],
    "postgresql": [{"budget": Decimal(10**15)}, {"name": "lone \ud800 surrogate"}, {"name": "nul \x00 byte"}],
}


def test_rows_the_database_refuses_are_quarantined_and_the_rest_of_the_batch_commits(store, db):
    bad = REFUSED[db.kind]
    batch = [item(n) for n in range(1, 51)]
    for k, change in enumerate(bad):
        batch[10 + 17 * k] = item(11 + 17 * k, **change)
    written = store.write("run1", batch)
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 50 - len(bad)
    assert len(written.refused) == len(bad) and len(written.stored) == 50 - len(bad)
    rows = db.rows("SELECT campaign_id, reason, payload FROM rejected_records ORDER BY campaign_id")
    assert [r[0] for r in rows] == sorted(f"campaign_{11 + 17 * k}" for k in range(len(bad)))
    assert all(r[1].startswith("refused by the database: ") for r in rows)
    assert json.loads(rows[0][2])["objective"] == "REACH"  # the platform's record, kept


def _table_columns(db, table: str) -> set[str]:
    if db.kind == "sqlite":
        return {row[1] for row in db.rows(f"PRAGMA table_info({table})")}
    return {row[0] for row in db.rows("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                                      (table,))}


def test_the_migrated_tables_hold_exactly_the_declared_fields(store, db):
    """A field declared in adcrawler.model without its migration (or the reverse) fails here."""
    from adcrawler.store.writes import CAMPAIGN_COLUMNS, METRICS_COLUMNS

    # removed_at is the listing's word, not the record's: written by mark_removed alone.
    assert _table_columns(db, "campaigns") == set(CAMPAIGN_COLUMNS) | {"removed_at"}
    assert _table_columns(db, "campaign_metrics") == set(METRICS_COLUMNS)
    # A history row is built by name: every value lands in its own column.
    store.write("run1", [item(7, clicks=3, conversions=2, quality_flags=("clicks_exceed_impressions",))])
    row = db.rows("SELECT campaign_id, client_id, impressions, clicks, conversions, quality_flags, sync_status, "
                  "budget, status FROM campaign_metrics")
    assert [(*map(str, r[:5]), db.json(r[5]), r[6], Decimal(str(r[7])), r[8]) for r in row] == [
        ("campaign_7", "acme", "1007", "3", "2", ["clicks_exceed_impressions"], "synced", Decimal("100.5"), "active")]


def test_migrations_are_versioned_and_idempotent(store, db):
    assert store.migrate() == migrations.LATEST
    assert db.rows("SELECT version FROM schema_version ORDER BY version") == [(v,) for v, _ in migrations.MIGRATIONS]


MIGRATE = """
import sys
from adcrawler.store import open_store
sys.stdin.readline()  # the test's go: it holds the migration lock now
store = open_store(sys.argv[1])
print("saw", store.version(), flush=True)
print(store.migrate(), flush=True)
store.close()
"""


def _hold_migrations(backend: str, url: str):
    """A connection holding what a migration takes (PostgreSQL's advisory lock, SQLite's write lock)."""
    if backend == "postgresql":
        import psycopg2

        conn = psycopg2.connect(url)
        conn.cursor().execute("SELECT pg_advisory_xact_lock(hashtextextended('adcrawler:migrate', 0))")
        return conn
    import sqlite3

    conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN EXCLUSIVE")
    return conn


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_processes_migrate_a_fresh_database_together(tmp_path, request, backend):
    """Four jobs start on a new database together: each finds it behind, waits for the one that
    migrates, and starts; each migration runs once. The race is made, not hoped for: the test holds
    the migration lock until all four have found the schema behind."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/fresh.sqlite3"
    holder = _hold_migrations(backend, url)
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        seen = [proc.stdout.readline().strip() for proc in procs]  # each past its read, now waiting for the lock
        assert seen == ["saw 0"] * 4, seen
    finally:
        holder.rollback() if backend == "postgresql" else holder.execute("ROLLBACK")
        holder.close()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in results]
    assert [out.strip() for out, _ in results] == [str(migrations.LATEST)] * 4
    check = open_store(url)
    cur = check.conn.cursor()
    cur.execute("SELECT version FROM schema_version ORDER BY version")
    assert [row[0] for row in cur.fetchall()] == [v for v, _ in migrations.MIGRATIONS]  # each applied once
    check.close()


def test_an_older_database_upgrades_in_place(db):
    old = open_store(db.url, str(db.workdir))
    try:
        assert old.migrate(target=1) == 1
        cur = old.conn.cursor()
        cur.execute("INSERT INTO rejected_records (run_id, client_id, reason, payload, seen_at) "
                    "VALUES ('r0', 'acme', 'old', '{}', '2026-01-01T00:00:00+00:00')")
        cur.execute("INSERT INTO campaigns (client_id, campaign_id, name, status, budget, impressions, clicks, "
                    "conversions, created_at, sync_status, fetched_at, updated_at) VALUES ('acme', 'campaign_1', "
                    "'Campaign 1', 'active', 1, 1, 1, 1, '2026-01-01', 'synced', '2026-01-01', '2026-01-01')")
        old.conn.commit()
        assert old.migrate() == migrations.LATEST
        assert db.rows("SELECT reason FROM rejected_records") == [("old",)]
        assert db.rows("SELECT campaign_id, raw, quality_flags FROM campaigns") == [("campaign_1", None, None)]
        versions = db.rows("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(v,) for v, _ in migrations.MIGRATIONS]
        old.write_batch("r1", [item(1, clicks=99)])
        assert db.scalar("SELECT clicks FROM campaigns") == 99
        bad = RejectedRecord(client_id="acme", campaign_id=None, reason="x", payload='{"clicks": -5}', seen_at=T0)
        old.write_batch("r1", [bad, bad])
        old.write_batch("r1", [bad])  # a resumed run quarantines it again: still one row
        assert db.scalar("SELECT COUNT(*) FROM rejected_records WHERE run_id = 'r1'") == 1
    finally:
        old.close()


def test_version_3_flags_become_json_arrays_and_the_schema_documents_itself(db):
    old = open_store(db.url, str(db.workdir))
    try:
        assert old.migrate(target=3) == 3 and old.version() == 3
        cur = old.conn.cursor()
        for n, flags in ((1, "clicks_exceed_impressions,unknown_status"), (2, None)):
            cur.execute("INSERT INTO campaigns (client_id, campaign_id, name, status, budget, impressions, clicks, "
                        "conversions, created_at, sync_status, fetched_at, updated_at, quality_flags) VALUES ('acme', "
                        f"'campaign_{n}', 'C', 'active', 1, 1, 1, 1, '2026-01-01', 'synced', '2026-01-01', "
                        "'2026-01-01', %s)".replace("%s", "?" if db.kind == "sqlite" else "%s"), (flags,))
        old.conn.commit()
        assert old.migrate() == migrations.LATEST
    finally:
        old.close()
    flags = dict(db.rows("SELECT campaign_id, quality_flags FROM campaigns"))
    assert db.json(flags["campaign_1"]) == ["clicks_exceed_impressions", "unknown_status"]
    assert flags["campaign_2"] is None
    assert db.scalar("SELECT COUNT(*) FROM schema_version WHERE applied_at IS NULL") == 0
    # Every table and column is documented, and nothing else (SQLite's locks are files: no lease table).
    for table, (_, columns) in migrations.DOCS.items():
        assert _table_columns(db, table) == (set() if (db.kind, table) == ("sqlite", "client_leases")
                                             else set(columns)), table
    if db.kind == "postgresql":
        described = db.rows("SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                            "AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
                            "AND col_description(c.oid, a.attnum) IS NOT NULL")
        assert set(described) == {(t, c) for t, (_, columns) in migrations.DOCS.items() for c in columns}
        assert db.scalar("SELECT obj_description('campaigns'::regclass)") == migrations.DOCS["campaigns"][0]


def test_a_newer_schema_is_refused(store, db):
    cur = store.conn.cursor()
    cur.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.conn.commit()
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_client_lock_is_exclusive_and_released_on_close(store, db):
    a, b = store, open_store(db.url, str(db.workdir))
    try:
        assert a.try_lock("acme") and not b.try_lock("acme") and b.try_lock("globex")
        assert a.locks_lost() == {} and b.locks_lost() == {}
        a.close()
        assert b.try_lock("acme")
    finally:
        b.close()


def _leases(db) -> dict[str, str]:
    return dict(db.rows("SELECT client_id, run_id FROM client_leases"))


@pytest.mark.postgres
def test_a_lease_is_renewed_while_held_and_taken_once_it_expires(store, db):
    if db.kind != "postgresql":
        pytest.skip("SQLite's lock is a file lock")
    other = open_store(db.url, str(db.workdir))
    try:
        store.lease_as("run-a", "pid 1 on a", 1.5)
        other.lease_as("run-b", "pid 2 on b", 1.5)
        assert store.try_lock("acme") and not other.try_lock("acme")
        for _ in range(6):  # three lease lengths, renewed as it goes: still ours
            time.sleep(0.5)
            assert store.locks_lost() == {}
        assert not other.try_lock("acme") and _leases(db) == {"acme": "run-a"}
        # A run that stops renewing (a process stopped, a partition) loses it once it expires...
        time.sleep(1.6)
        assert other.try_lock("acme") and _leases(db) == {"acme": "run-b"}
        # ... and learns it at its next renewal: nothing more is sent for the client.
        time.sleep(0.5)
        assert store.locks_lost() == {"acme": "its lease was taken by another run"}
        assert store.locks_lost() == {}  # forgotten: never taken again
        store.close()
        assert _leases(db) == {"acme": "run-b"}  # a lost lease is not released by its old holder
    finally:
        other.close()
    assert _leases(db) == {}


@pytest.mark.postgres
def test_twenty_thousand_leases_are_held_at_once_on_default_settings(store, db):
    """An advisory lock per client fills PostgreSQL's shared lock table (on default settings one
    session's 12,785th fails: out of shared memory); a lease is a row."""
    if db.kind != "postgresql":
        pytest.skip("SQLite's lock is a file lock")
    clients = [f"client-{n}" for n in range(20_000)]
    store.lease_as("run-a", "pid 1", 60)
    assert all(store.try_lock(client) for client in clients)
    store.lease.renewed = 0  # due now
    assert store.locks_lost() == {}
    assert db.scalar("SELECT COUNT(*) FROM client_leases WHERE run_id = 'run-a' AND expires_at > now()") == 20_000
    store.close()
    assert _leases(db) == {}


def _replay(db, *files):
    env = {**os.environ, "DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}
    return subprocess.run([sys.executable, "-m", "scrapy", "replay", *map(str, files)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_run_rows_exist_from_the_start_and_killed_runs_become_interrupted(store, db):
    assert store.start_run("r1", "acme", T0) == []
    assert db.rows("SELECT outcome, finished_at FROM sync_runs") == [("running", None)]
    # r1's process was killed: the next run of the client (holding its lock) finds it.
    stale = store.start_run("r2", "acme", T0)
    assert [run for run, _ in stale] == ["r1"]
    assert dict(db.rows("SELECT run_id, outcome FROM sync_runs")) == {"r1": "interrupted", "r2": "running"}
    assert store.start_run("r2", "acme", T0) == []  # a resumed attempt of the same run
    assert store.last_success("acme") is None


def test_replay_is_idempotent(db, tmp_path):
    [spool] = append_spool(tmp_path / "spool", "run9", [item(1), item(2), rejected(payload="{}", reason="x")])
    copy = tmp_path / "copy.jsonl"
    copy.write_text(spool.read_text())
    first = _replay(db, spool)
    assert first.returncode == 0 and "2 inserted" in first.stdout, first.stderr
    assert (spool.parent / (spool.name + ".replayed")).exists()
    second = _replay(db, copy)
    assert second.returncode == 0 and "2 unchanged" in second.stdout
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 2
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE run_id = 'run9'") == 2
    missing = _replay(db, tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    # The command line of an earlier version says what replaced it.
    old = subprocess.run([sys.executable, "-m", "adcrawler.replay", str(copy)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert old.returncode == 2 and "is now `scrapy replay`" in old.stderr


def test_replay_quarantines_what_it_cannot_load_and_loads_the_rest(db, tmp_path):
    bad_value = REFUSED[db.kind][1]  # a value the item's declaration admits and the database refuses
    store = open_store(db.url, str(db.workdir))
    store.migrate()
    store.start_run("run7", "acme", T0)
    store.record_run(_run_row("run7", "partial", "4 rows waiting in the spool (lock timeout)"))
    store.close()
    [spool] = append_spool(tmp_path / "spool", "run7", [item(1), item(2, **bad_value), item(3), item(4)])
    text = spool.read_text()
    spool.write_text(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1] + "\n")  # the last line torn in half
    result = _replay(db, spool)
    assert result.returncode == 1 and "1 spool line(s) could not be read back" in result.stderr, result.stderr
    assert "2 inserted" in result.stdout and "1 refused by the database" in result.stdout
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 2
    reasons = db.rows("SELECT run_id, client_id, reason FROM rejected_records ORDER BY reason")
    assert reasons[0][2].startswith("refused by the database")
    # The torn record is kept under its run and client, and the run is not a success.
    assert reasons[1][:2] == ("run7", "acme") and reasons[1][2].startswith("unreadable: spool line 4")
    assert db.rows("SELECT outcome, outcome_reasons FROM sync_runs") == [
        ("partial", "1 spooled row(s) unreadable, kept in quarantine")]


def test_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="DATABASE_URL"):
        open_store("mysql://x", str(tmp_path))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        open_store("", str(blocker))
    with pytest.raises(StoreError, match="cannot connect") as err:
        open_store("postgresql://nobody:hunter22@127.0.0.1:1/none", str(tmp_path))
    assert "hunter22" not in str(err.value)


# -- issue: everything the platform sends is kept, counted from the rows ------

def test_a_change_in_any_field_sent_updates_the_row_and_fetched_at_follows_every_send(store, db):
    store.write_batch("run1", [item(1)])
    later = datetime(2026, 1, 2, tzinfo=timezone.utc)
    same = store.write_batch("run2", [item(1, fetched_at=later)])
    assert same["acme"].unchanged == 1  # nothing in the record changed...
    assert db.scalar("SELECT fetched_at FROM campaigns") in (later, later.isoformat(timespec="microseconds"))
    # ...an unmodelled field changes: only raw holds it.
    changed = store.write_batch("run3", [item(1, raw=json.dumps({"id": "campaign_1", "objective": "SALES"}))])
    assert changed["acme"].updated == 1
    assert db.json(db.scalar("SELECT raw FROM campaigns"))["objective"] == "SALES"
    assert db.rows("SELECT run_id, row_change FROM campaign_metrics ORDER BY run_id") == [
        ("run1", "inserted"), ("run2", "unchanged"), ("run3", "updated")]


def test_values_not_sent_are_null_in_both_tables(store, db):
    nulls = dict.fromkeys(("name", "status", "budget", "impressions", "clicks", "conversions", "created_at"))
    store.write_batch("run1", [item(1, **nulls, quality_flags=("missing_clicks",))])
    assert db.rows("SELECT name, status, budget, impressions, clicks, conversions, created_at FROM campaigns") == [
        (None,) * 7]
    assert db.rows("SELECT status, budget, impressions, clicks, conversions FROM campaign_metrics") == [(None,) * 5]


def test_budgets_are_exact_to_the_cent_on_both_backends(store, db):
    budgets = ("99999999999999.99", "-99999999999999.99", "0.00", "12.30", "1234567890123.45")
    store.write_batch("run1", [item(n, budget=Decimal(b)) for n, b in enumerate(budgets, 1)])
    stored = dict(db.rows("SELECT campaign_id, budget FROM campaigns"))
    assert [Decimal(str(stored[f"campaign_{n}"])) for n in range(1, 6)] == [Decimal(b) for b in budgets]
    again = store.write_batch("run2", [item(n, budget=Decimal(b)) for n, b in enumerate(budgets, 1)])
    assert again["acme"].unchanged == 5  # read back equal: not rewritten


def _run_row(run_id: str, outcome: str, reasons: str | None = None) -> dict:
    return {"run_id": run_id, "client_id": "acme", "started_at": T0, "finished_at": T0, "outcome": outcome,
            "outcome_reasons": reasons, "campaigns_seen": 2, "retries": 0, "responses_429": 0,
            "token_refreshes": 1, "rate_limit": 10, "rate_window": 60.0, "stats": {}}


def test_a_runs_counts_are_its_rows_whatever_happened_to_the_process(store, db):
    store.start_run("r1", "acme", T0)
    store.write_batch("r1", [item(1), item(2, sync_status="failed", synced_at=None), rejected()])
    # r1 was killed before recording its end; the next run of the client finds it.
    store.start_run("r2", "acme", T0)
    assert db.rows("SELECT outcome, campaigns_seen, campaigns_synced, campaigns_failed, rows_inserted, "
                   "records_rejected FROM sync_runs WHERE run_id = 'r1'") == [("interrupted", 3, 1, 1, 2, 1)]
    store.write_batch("r2", [item(1), item(3)])
    store.write_batch("r2", [item(3, clicks=99)])  # written twice in one run: inserted, then updated
    store.record_run(_run_row("r2", "succeeded"))
    assert db.rows("SELECT campaigns_synced, rows_inserted, rows_updated, rows_unchanged, records_rejected "
                   "FROM sync_runs WHERE run_id = 'r2'") == [(2, 1, 0, 1, 0)]


def test_earlier_quarantines_are_known_by_campaign_and_reason(store, db):
    no_id = RejectedRecord.of("acme", {"clicks": 1}, "no id", T0)
    store.write_batch("r1", [rejected(), no_id])
    known = store.known_problems("acme", "r2")
    assert rejected().problem in known and no_id.problem in known
    assert rejected(payload='{"id": "campaign_; DROP", "clicks": 7}').problem in known  # its metrics moved on
    assert rejected(reason="another reason").problem not in known
    assert store.known_problems("acme", "r1") == set() and store.known_problems("globex", "r2") == set()


def test_a_replay_closes_the_run_it_completes(db, tmp_path):
    store = open_store(db.url, str(db.workdir))
    store.migrate()
    store.start_run("run5", "acme", T0)
    store.start_run("run6", "acme", T0)  # run5 is now interrupted; run6 records a partial run
    store.record_run(_run_row("run6", "partial", "2 rows waiting in the spool (lock timeout)"))
    store.start_run("run7", "acme", T0)  # its process died with the database down: still running
    store.close()
    spools = [*append_spool(tmp_path / "spool", "run6", [item(1), item(2)]),
              *append_spool(tmp_path / "spool", "run7", [item(3)])]
    assert _replay(db, *spools).returncode == 0
    rows = {r[0]: r[1:] for r in db.rows("SELECT run_id, outcome, outcome_reasons, campaigns_synced, finished_at "
                                         "FROM sync_runs")}
    assert rows["run6"][:3] == ("succeeded", None, 2)
    assert rows["run7"][0] == "interrupted" and "spool was replayed" in rows["run7"][1]
    assert rows["run7"][2] == 1 and rows["run7"][3] is not None


def test_pruning_removes_one_clients_old_history_in_batches(store, db, monkeypatch):
    from datetime import timedelta

    later = T0 + timedelta(days=40)
    for run, at in (("old1", T0), ("old2", T0), ("new", later)):
        store.write(run, [item(n, fetched_at=at) for n in range(1, 8)] + [item(1, client="globex", fetched_at=at)])
    monkeypatch.setattr(type(store), "PRUNE_BATCH", 3)  # 14 rows: five batches, each its own transaction
    assert store.prune("acme", T0 + timedelta(days=10)) == (14, 0)
    assert db.rows("SELECT client_id, run_id, COUNT(*) FROM campaign_metrics GROUP BY 1, 2 ORDER BY 1, 2") == [
        ("acme", "new", 7), ("globex", "new", 1), ("globex", "old1", 1), ("globex", "old2", 1)]
    assert store.prune("acme", T0 + timedelta(days=10)) == (0, 0)
