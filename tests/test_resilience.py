"""Kill, outage and concurrency: nothing fetched is lost, nothing runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.runner import ROOT, latest_stats, run_crawl, start_crawl
from tests.conftest import SCALE, assert_run_counts_match_rows, read_until, wait_for
from tests.db import Db


def _synced(mock, client="demo") -> int:
    return sum(mock.stats()["syncs"].get(client, {}).values())


# Held runs wait for the simulator's release: a sync timeout that cannot fire first.
HELD = {"ADCRAWLER_TIMEOUT_SYNC": "6000"}  # 60 s at time scale 0.01


def test_a_client_locked_by_another_run_is_skipped_and_the_others_go_on(mock_factory, db):
    # The simulator holds demo's syncs after the first ten: the first run is
    # still going, holding its lock, until the test releases it.
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "60", "--hold-syncs", "10",
                        "--hold-client", "demo")
    first = start_crawl(mock.url, "demo", db.workdir, database_url=db.url, extra_env=HELD)
    try:
        wait_for(mock.held, 30, "the first run to be held mid-sync")
        auth_before = mock.stats()["requests"]["demo"]["auth"]
        second = run_crawl(mock.url, "demo,globex", db.workdir, database_url=db.url, timeout=120)
        assert second.returncode == 0, second.output[-3000:]
        assert "Client demo skipped: another run holds the client: run " in second.output
        assert second.stat("outcome", "demo") == "skipped" and second.stat("outcome", "globex") == "succeeded"
        assert mock.stats()["requests"]["demo"]["auth"] == auth_before  # it sent nothing for demo
        assert "skipped (another run holds them): demo" in second.output.splitlines()[-1]
    finally:
        mock.release()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-2000:]
    assert dict(db.rows("SELECT client_id, COUNT(*) FROM campaigns GROUP BY client_id")) == {"demo": 60, "globex": 60}
    # The skipped client's row names the run that did the work; that run's row is its own.
    assert sorted(db.rows("SELECT client_id, outcome FROM sync_runs")) == [("demo", "skipped"), ("demo", "succeeded"),
                                                                          ("globex", "succeeded")]
    holder = db.scalar("SELECT run_id FROM sync_runs WHERE client_id = 'demo' AND outcome = 'succeeded'")
    assert db.rows("SELECT outcome_reasons, campaigns_synced FROM sync_runs WHERE outcome = 'skipped'") == [
        (f"another run holds the client: run {holder}", 0)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_without_resyncing(mock_factory, tmp_path, sig):
    db = Db(tmp_path)
    # Half the campaigns are synced, then the simulator holds the rest until released.
    mock = mock_factory("--time-scale", SCALE, "--seed", "21", "--sync-hang-rate", "0", "--hold-syncs", "50")
    jobdir = tmp_path / "job"
    settings = {"JOBDIR": str(jobdir)}
    first = start_crawl(mock.url, "demo", tmp_path, settings=settings, extra_env=HELD)
    try:
        wait_for(mock.held, 60, "half the campaigns, then a held sync")
    finally:
        first.send_signal(sig)
        mock.release()  # a graceful stop lets the held calls finish
        first.communicate(timeout=60)
    # SIGTERM is a graceful stop: in-flight requests finish, the run is recorded
    # as partial and exits 1. SIGKILL leaves buffered items in the journal.
    assert first.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 1)
    synced_before = _synced(mock)
    assert synced_before < 100
    if sig == signal.SIGKILL:  # no process left to close its row
        assert db.rows("SELECT outcome FROM sync_runs") == [("running",)]

    second = run_crawl(mock.url, "demo", tmp_path, settings=settings, extra_env={"LOG_LEVEL": "DEBUG"})
    # (Debug logs, without the per-response lines, say why if this ever fails.)
    assert second.returncode == 0, "\n".join(line for line in second.output.splitlines()
                                             if "DEBUG: Crawled" not in line and "DEBUG: Scraped" not in line)[-12000:]
    syncs = mock.stats()["syncs"]["demo"]
    assert set(syncs) == {f"campaign_{n}" for n in range(1, 101)}
    twice = [c for c, n in syncs.items() if n > 1]
    # Only requests in flight at the kill may have reached the platform twice:
    # at most one budget's worth (10 per client).
    assert len(twice) <= 10, twice
    assert second.stat("campaigns_resumed", "demo") >= synced_before - 10
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 100
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 100  # one run, one row each
    # One run record, completed by the resumed attempt, counting both attempts' work.
    assert db.rows("SELECT outcome, campaigns_seen, campaigns_synced, rows_inserted FROM sync_runs") == [
        ("succeeded", 100, 100, 100)]
    assert_run_counts_match_rows(db)
    # The summary counts what the run record counts: listed, stored, synced.
    lines = second.output.splitlines()
    row = lines[lines.index(next(line for line in lines if line.endswith("Summary:"))) + 2]
    assert row.split()[:5] == ["demo", "succeeded", "100", "100", "100"], row
    # The job directory holds only our own JSON files: no request queue, no pickled spider.
    assert sorted(p.name for p in jobdir.iterdir()) == ["adcrawler-journal.jsonl", "adcrawler-run.json"]

    # The run is over: the same job directory now starts a new run, which syncs everything again.
    third = run_crawl(mock.url, "demo", tmp_path, settings=settings)
    assert third.returncode == 0, third.output[-3000:]
    assert third.stats["adcrawler/run_id"] != second.stats["adcrawler/run_id"]
    assert third.stat("campaigns_synced", "demo") == 100 and third.stat("campaigns_resumed", "demo") == 0
    assert db.scalar("SELECT COUNT(DISTINCT run_id) FROM campaign_metrics") == 2


def test_a_quiet_spell_does_not_keep_synced_rows_in_memory(mock_factory, tmp_path):
    """The flush interval is a timer: rows are written while the crawler waits for its budget."""
    db = Db(tmp_path)
    # Nine syncs come back, then the simulator holds the tenth: a quiet spell
    # that lasts until the test ends it, far below the batch size.
    mock = mock_factory("--time-scale", "0.05", "--quiet", "--campaigns", "15", "--hold-syncs", "9")
    crawl = start_crawl(mock.url, "demo", tmp_path, scale=0.05,
                        extra_env=HELD)  # the flush interval at time scale 0.05: 0.25 s
    try:
        wait_for(mock.held, 30, "the first window's syncs")
        wait_for(lambda: db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 9, 30,
                 "the flush timer to write the nine rows")
        synced = _synced(mock)
    finally:
        crawl.kill()
        crawl.communicate(timeout=30)
        mock.release()
    assert synced == 9  # still in the quiet spell: 1 list call + 9 syncs spent the window
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == synced
    # The killed run's row says so until the next run of the client finds it.
    assert db.rows("SELECT outcome FROM sync_runs") == [("running",)]
    again = run_crawl(mock.url, "demo", tmp_path, scale=0.05)
    assert again.returncode == 0, again.output[-3000:]
    assert "never finished: the process ended first; recorded as interrupted" in again.output
    # The killed run's record counts what it stored.
    assert sorted(db.rows("SELECT outcome, campaigns_synced, rows_inserted FROM sync_runs")) == [
        ("interrupted", 9, 9), ("succeeded", 15, 6)]
    assert_run_counts_match_rows(db)


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *(
        ["-m", "fast"] if action == "stop" else [])], check=True, timeout=60, capture_output=True)


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1"], capture_output=True).returncode == 0


@pytest.mark.postgres
@pytest.mark.serial
def test_a_postgres_restart_shorter_than_the_lease_costs_retries_not_the_run(mock_factory, pg_url, tmp_path):
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("needs the local PostgreSQL cluster's control command")
    db = Db(tmp_path, pg_url)
    mock = mock_factory("--time-scale", SCALE, "--seed", "8", "--sync-hang-rate", "0", "--hold-syncs", "20")
    crawl = start_crawl(mock.url, "demo", tmp_path, database_url=pg_url, extra_env=HELD)
    try:
        wait_for(mock.held, 60, "a fifth of the campaigns, then a held sync")
        _pg_ctl("stop")
        mock.release()  # the syncs in flight answer: their batch meets the restart
        time.sleep(0.5)
    finally:
        _pg_ctl("start")  # about 2.5 s down in all: the lease lasts 10 s at this clock
    wait_for(_pg_ready, 60, "PostgreSQL to accept connections again")
    out, _ = crawl.communicate(timeout=180)
    stats = latest_stats(tmp_path)
    assert crawl.returncode == 0 and out.splitlines()[-1].endswith("Sync complete: 1 client(s) succeeded"), out
    assert stats.get("adcrawler/db_retries", 0) > 0, out[-3000:]
    assert "adcrawler/rows_spooled" not in stats and not list((tmp_path / "spool").glob("*.jsonl"))
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 100
    assert db.rows("SELECT outcome FROM sync_runs") == [("succeeded",)]
    assert db.rows("SELECT client_id FROM client_leases") == []  # released at the end
    assert_run_counts_match_rows(db)


@pytest.mark.postgres
@pytest.mark.serial
def test_a_postgres_outage_longer_than_the_lease_stops_the_client_and_loses_nothing(mock_factory, pg_url, tmp_path):
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("needs the local PostgreSQL cluster's control command")
    db = Db(tmp_path, pg_url)
    mock = mock_factory("--time-scale", SCALE, "--seed", "8", "--sync-hang-rate", "0", "--hold-syncs", "20")
    crawl = start_crawl(mock.url, "demo", tmp_path, database_url=pg_url, extra_env=HELD)
    try:
        wait_for(mock.held, 60, "a fifth of the campaigns, then a held sync")
        _pg_ctl("stop")
        mock.release()  # the rest of the run meets the outage, which lasts until the lease ends
        early = read_until(crawl, ("its lease expired", "Could not write a batch"), 120)
    finally:
        _pg_ctl("start")
    wait_for(_pg_ready, 60, "PostgreSQL to accept connections again")
    out, _ = crawl.communicate(timeout=180)
    out = early + out
    stats = latest_stats(tmp_path)
    assert stats.get("adcrawler/db_retries", 0) > 0, out[-3000:]
    # Past its lease another run could have taken the client: the run stopped working for it, and says why.
    assert crawl.returncode == 1, out[-3000:]
    assert "demo: interrupted (its lease expired while the database did not answer" in out.splitlines()[-1], out
    assert stats["adcrawler/rows_spooled"] > 0 and "replay them with: scrapy replay" in out
    files = sorted((tmp_path / "spool").glob("*.jsonl"))
    replay = subprocess.run([sys.executable, "-m", "scrapy", "replay", *map(str, files)], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": pg_url}, capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    # Nothing fetched is lost: every campaign the platform synced for the run is stored as synced.
    synced = {r[0] for r in db.rows("SELECT campaign_id FROM campaigns WHERE sync_status = 'synced'")}
    assert synced == set(mock.stats()["syncs"]["demo"]), out[-4000:]
    # The next run completes the client.
    again = run_crawl(mock.url, "demo", tmp_path, database_url=pg_url)
    assert again.returncode == 0, again.output[-3000:]
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 100
    run_id = again.stats["adcrawler/run_id"]
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE run_id = %s", (run_id,)) == 100
    assert_run_counts_match_rows(db)
    assert db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'") == 0


@pytest.mark.parametrize("link", ["file", "directory"])
def test_one_sqlite_file_reached_by_two_paths_is_one_lock(mock_factory, tmp_path, link):
    """A symlink to the database (or to its directory) is the same database: the same client lock."""
    real = tmp_path / "real"
    real.mkdir()
    if link == "file":
        (tmp_path / "alias").mkdir()
        (real / "db.sqlite3").touch()
        (tmp_path / "alias" / "db.sqlite3").symlink_to(real / "db.sqlite3")
    else:
        (tmp_path / "alias").symlink_to(real)
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "30", "--hold-syncs", "10")
    first = start_crawl(mock.url, "demo", tmp_path / "one", extra_env=HELD,
                        database_url=f"sqlite:///{real / 'db.sqlite3'}")
    try:
        wait_for(mock.held, 30, "the first run to be held mid-sync")
        second = run_crawl(mock.url, "demo", tmp_path / "two", database_url=f"sqlite:///{tmp_path}/alias/db.sqlite3")
        assert second.returncode == 0, second.output[-3000:]
        assert second.stat("outcome", "demo") == "skipped"
    finally:
        mock.release()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-2000:]
    assert mock.stats()["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 31)}  # synced once each
    assert mock.stats()["total_429"] == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB file system of its own (tmpfs), unmounted at the end: a disk that can fill up."""
    path = tmp_path / "small-disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs under CI: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_a_full_disk_under_the_job_directory_and_the_database_loses_nothing(mock_factory, tmp_path, small_disk):
    """The job directory and the database fill up mid-run; the spool, elsewhere, keeps every row."""
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "60", "--hold-syncs", "10")
    crawl = start_crawl(mock.url, "demo", tmp_path, database_url=f"sqlite:///{small_disk}/db.sqlite3",
                        settings={"JOBDIR": str(small_disk / "job")},
                        extra_env=HELD)
    try:
        wait_for(mock.held, 30, "the first syncs, then a held one")
        wait_for(lambda: (small_disk / "job" / "adcrawler-journal.jsonl").exists(), 30, "the journal")
        _fill(small_disk)
    finally:
        mock.release()
        out, _ = crawl.communicate(timeout=180)
    assert "Traceback" not in out, out[-4000:]
    assert crawl.returncode == 1
    synced = set(mock.stats()["syncs"]["demo"])
    (small_disk / "filler").unlink()
    import sqlite3

    conn = sqlite3.connect(small_disk / "db.sqlite3")
    stored = {r[0] for r in conn.execute("SELECT campaign_id FROM campaigns WHERE sync_status = 'synced'")}
    conn.close()
    spooled = {json.loads(line)["item"]["campaign_id"] for f in (tmp_path / "spool").glob("*.jsonl")
               for line in f.read_text().splitlines()}
    assert synced and synced <= stored | spooled  # every synced campaign written or kept on disk
    assert "rows waiting in the spool (disk)" in out.splitlines()[-1], out.splitlines()[-1]
