"""Data over time, end to end on both backends: campaigns deleted at the source are marked removed
by a complete listing only, a listing that shrinks too far removes nothing until confirmed, and a
campaign that comes back is current again."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness.runner import ROOT, run_crawl
from tests.conftest import QUIET, SCALE, last_line


def _crawl(mock, db, **kwargs):
    time.sleep(60 * float(SCALE))  # a new process cannot see the last one's requests in the window
    return run_crawl(mock.url, "demo", db.workdir, database_url=db.url, **kwargs)


def _current(db) -> int:
    return db.scalar("SELECT COUNT(*) FROM campaigns WHERE removed_at IS NULL")


def _removed(db) -> set[str]:
    return {r[0] for r in db.rows("SELECT campaign_id FROM campaigns WHERE removed_at IS NOT NULL")}


def _ids(first: int, last: int) -> set[str]:
    return {f"campaign_{n}" for n in range(first, last + 1)}


def test_a_campaign_gone_from_a_complete_listing_is_removed_and_comes_back(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "30")
    assert _crawl(mock, db).returncode == 0
    assert _current(db) == 30 and _removed(db) == set()

    mock.serve(20)
    second = _crawl(mock, db)
    assert second.returncode == 0, second.output[-3000:]
    assert _removed(db) == _ids(21, 30) and _current(db) == 20
    assert second.stat("campaigns_removed", "demo") == 10
    assert "10 campaign(s) no longer listed, marked removed: campaign_21, campaign_22" in second.output
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE campaign_id = 'campaign_30'") == 1  # kept
    stats = db.json(db.scalar("SELECT stats FROM sync_runs ORDER BY started_at DESC LIMIT 1"))
    assert stats["adcrawler/client/demo/campaigns_removed"] == 10  # the run record holds it

    # A listing cut short by the campaign bound is not complete: it removes nothing.
    truncated = _crawl(mock, db, settings={"ADCRAWLER_PAGE_SIZE": "5", "ADCRAWLER_MAX_CAMPAIGNS": "5"})
    assert truncated.returncode == 1 and truncated.stat("campaigns_removed", "demo") == 0
    assert _current(db) == 20

    # 20 -> 3 is more than the guard's half: nothing removed, partial, and the reason says so.
    mock.serve(3)
    shrunk = _crawl(mock, db)
    assert shrunk.returncode == 1, shrunk.output[-3000:]
    said = "the listing shrank from 20 to 3 campaigns: 17 removals held back"
    assert said in last_line(shrunk) and shrunk.stat("campaigns_removal_held", "demo") == 17
    assert db.scalar("SELECT outcome FROM sync_runs ORDER BY started_at DESC LIMIT 1") == "partial"
    assert _current(db) == 20

    dry = _crawl(mock, db, arguments={"dry_run": "1", "confirm_removals": "1"})
    assert dry.returncode == 0 and _current(db) == 20  # a dry run writes nothing

    confirmed = _crawl(mock, db, arguments={"confirm_removals": "1"})
    assert confirmed.returncode == 0, confirmed.output[-3000:]
    assert confirmed.stat("campaigns_removed", "demo") == 17 and _current(db) == 3

    mock.serve(20)
    back = _crawl(mock, db)
    assert back.returncode == 0, back.output[-3000:]
    assert back.stat("campaigns_back", "demo") == 17 and back.stat("campaigns_removed", "demo") == 0
    assert _removed(db) == _ids(21, 30) and _current(db) == 20

    # scrapy runs says what each run changed.
    env = {**os.environ, "DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}
    runs = subprocess.run([sys.executable, "-m", "scrapy", "runs", "demo", "-n", "10"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert runs.returncode == 0, runs.stderr
    for said in ("removed 10", "held 17", "removed 17", "back 17"):
        assert said in runs.stdout, runs.stdout
    last = db.scalar("SELECT run_id FROM sync_runs ORDER BY started_at DESC LIMIT 1")
    log = db.workdir / "logs" / f"{last}.log"  # kept beside the stats, as long as they are
    assert f"run {last[:12]}: log {log}" in runs.stdout and "campaign(s) marked removed are listed again" in (
        log.read_text())


def test_a_sync_whose_answer_was_lost_runs_once_where_the_platform_honours_idempotency_keys(mock_factory, tmp_path):
    from tests.db import Db

    lost = ("--campaigns", "100", "--sync-lost-rate", "0.1", "--hang-seconds", "5", "--seed", "7")
    executions = {}
    for honour in (True, False):
        mock = mock_factory(*QUIET, *lost, *(["--honour-idempotency-keys"] if honour else []))
        db = Db(tmp_path / str(honour))
        result = run_crawl(mock.url, "demo", db.workdir, database_url=db.url)
        assert result.returncode == 0, result.output[-3000:]
        platform = mock.stats()
        assert platform["requests"]["demo"]["sync"]["lost"] > 0  # answers were lost and the calls sent again
        assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 100
        executions[honour] = platform["syncs"]["demo"]
    assert executions[True] == {f"campaign_{n}": 1 for n in range(1, 101)}
    assert sum(executions[False].values()) > 100  # the same sync executed again without the key


def test_history_and_run_records_older_than_the_retention_are_pruned_after_a_run(mock_factory, db):
    from datetime import datetime, timedelta, timezone

    mock = mock_factory(*QUIET, "--campaigns", "10")
    assert _crawl(mock, db).returncode == 0 and _crawl(mock, db).returncode == 0
    first = db.scalar("SELECT run_id FROM sync_runs ORDER BY started_at LIMIT 1")
    old = datetime.now(timezone.utc) - timedelta(days=40)
    stamp = old if db.kind == "postgresql" else old.isoformat(timespec="microseconds")
    db.rows("UPDATE campaign_metrics SET captured_at = %s WHERE run_id = %s RETURNING 1", (stamp, first))
    db.rows("UPDATE sync_runs SET started_at = %s, finished_at = %s WHERE run_id = %s RETURNING 1",
            (stamp, stamp, first))

    kept = _crawl(mock, db)  # no retention set: everything is kept
    assert kept.returncode == 0 and db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 30
    pruned = _crawl(mock, db, settings={"ADCRAWLER_KEEP_DAYS": "30"})
    assert pruned.returncode == 0, pruned.output[-3000:]
    assert pruned.stat("history_pruned", "demo") == 10 and pruned.stat("runs_pruned", "demo") == 1
    assert "removed 10 history row(s) and 1 run record(s) older than 30 days" in pruned.output
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE run_id = %s", (first,)) == 0
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 30 and db.scalar("SELECT COUNT(*) FROM sync_runs") == 3
    assert _current(db) == 10  # the campaigns themselves stay


def test_fields_that_appear_or_vanish_are_said_once(mock_factory, db):
    plain = mock_factory(*QUIET, "--campaigns", "10")
    extra = mock_factory(*QUIET, "--campaigns", "10", "--unknown-fields")  # objective, labels, bid_strategy
    counts = []
    for mock in (plain, extra, extra, plain, plain):
        result = _crawl(mock, db)
        assert result.returncode == 0, result.output[-3000:]
        counts.append((result.stat("fields_new", "demo"), result.stat("fields_vanished", "demo")))
        if counts[-1][0]:
            assert "new since the last listing: bid_strategy, labels, objective (kept in raw)" in result.output
        if counts[-1][1]:
            assert "every record had at the last listing and none has now: bid_strategy, labels, objective" in (
                result.output)
    assert counts == [(0, 0), (3, 0), (0, 0), (0, 3), (0, 0)]
