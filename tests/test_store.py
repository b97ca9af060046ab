"""The storage layer on both backends: upsert counts, idempotence, migrations, locks, replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import os
import subprocess
import sys

import pytest

from adcrawler.items import CampaignItem, RejectedRecord
from harness.runner import ROOT
from adcrawler.spool import append_spool
from adcrawler.store import StoreError, open_store
from adcrawler.store import schema

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def item(n: int, client: str = "acme", **changes) -> CampaignItem:
    base = CampaignItem(client_id=client, campaign_id=f"campaign_{n}", name=f"Campaign {n}", status="active",
                        budget=Decimal("100.50"), impressions=1000 + n, clicks=10, conversions=1, created_at=T0,
                        fetched_at=T0, sync_status="synced", synced_at=T0)
    return replace(base, **changes)


@pytest.fixture
def store(db):
    s = open_store(db.url, str(db.workdir / "adcrawler.sqlite3"))
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
    payload = '{"id": "campaign_; DROP", "clicks": -5}'
    store.write_batch("run1", [RejectedRecord("acme", "bad id", payload, T0)])
    assert db.rows("SELECT client_id, reason, payload FROM rejected_records") == [("acme", "bad id", payload)]


def test_migrations_are_versioned_and_idempotent(store, db):
    assert store.migrate() == schema.LATEST
    assert db.rows("SELECT version FROM schema_version") == [(v,) for v, _ in schema.MIGRATIONS]


def test_an_older_database_upgrades_in_place(db):
    old = open_store(db.url, str(db.workdir / "adcrawler.sqlite3"))
    try:
        assert old.migrate(target=1) == 1
        cur = old.conn.cursor()
        cur.execute("INSERT INTO rejected_records (run_id, client_id, reason, payload, seen_at) "
                    "VALUES ('r0', 'acme', 'old', '{}', '2026-01-01T00:00:00+00:00')")
        old.conn.commit()
        old.write_batch("r0", [item(1)])
        assert old.migrate() == schema.LATEST
        assert db.rows("SELECT reason FROM rejected_records") == [("old",)]
        assert db.scalar("SELECT COUNT(*) FROM campaigns") == 1
        bad = RejectedRecord("acme", "x", '{"clicks": -5}', T0)
        old.write_batch("r1", [bad, bad])
        old.write_batch("r1", [bad])  # a resumed run quarantines it again: still one row
        assert db.scalar("SELECT COUNT(*) FROM rejected_records WHERE run_id = 'r1'") == 1
    finally:
        old.close()


def test_a_newer_schema_is_refused(store, db):
    cur = store.conn.cursor()
    cur.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.conn.commit()
    with pytest.raises(StoreError, match="newer"):
        store.migrate()


def test_client_lock_is_exclusive_and_released_on_close(db):
    path = str(db.workdir / "adcrawler.sqlite3")
    a, b = open_store(db.url, path), open_store(db.url, path)
    try:
        assert a.try_lock("acme") and not b.try_lock("acme") and b.try_lock("globex")
        a.close()
        assert b.try_lock("acme")
    finally:
        a.close()
        b.close()


def _replay(db, *files):
    env = {**os.environ, "DATABASE_URL": db.url, "ADCRAWLER_SQLITE_PATH": str(db.workdir / "adcrawler.sqlite3")}
    return subprocess.run([sys.executable, "-m", "adcrawler.replay", *map(str, files)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_replay_is_idempotent(db, tmp_path):
    spool = append_spool(tmp_path / "spool", "run9", [item(1), item(2), RejectedRecord("acme", "x", "{}", T0)])
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


def test_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="DATABASE_URL"):
        open_store("mysql://x", str(tmp_path / "x.db"))
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        open_store("", str(blocker / "x.db"))
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody:hunter22@127.0.0.1:1/none", str(tmp_path / "x.db"))
