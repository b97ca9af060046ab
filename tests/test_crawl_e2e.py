"""End to end: the real `scrapy crawl campaigns` against a real simulator process.

The simulator runs at time scale 0.01 (a 60 s window lasts 0.6 s) and the
crawler gets the matching settings, so these runs exercise the real protocol,
faults included, in seconds.
"""

from __future__ import annotations

import json


from harness.runner import DEMO_PASSWORD, run_crawl
from mock_api.campaigns import HOSTILE_NAMES

SCALE = "0.01"


def _crawl(mock, clients, db, **kwargs):
    return run_crawl(mock.url, clients, db.workdir, database_url=db.url, **kwargs)


def test_default_faults_sync_every_campaign_once_and_rerun_updates(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--seed", "11")
    first = _crawl(mock, "demo", db)
    assert first.returncode == 0, first.output[-3000:]
    platform = mock.stats()
    assert platform["total_429"] == 0
    assert platform["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 101)}
    assert platform["requests"]["demo"]["sync"].get("503", 0) > 0  # faults did happen
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE client_id = 'demo' AND sync_status = 'synced'") == 100
    clicks_before = dict(db.rows("SELECT campaign_id, impressions FROM campaigns"))

    second = _crawl(mock, "demo", db)
    assert second.returncode == 0, second.output[-3000:]
    platform = mock.stats()
    assert platform["total_429"] == 0
    assert platform["syncs"]["demo"] == {f"campaign_{n}": 2 for n in range(1, 101)}
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 100
    assert db.scalar("SELECT COUNT(DISTINCT campaign_id) FROM campaigns") == 100
    after = dict(db.rows("SELECT campaign_id, impressions FROM campaigns"))
    assert all(after[c] > clicks_before[c] for c in after)  # metrics were updated
    assert second.stat("rows_updated", "demo") == 100 and second.stat("rows_inserted", "demo") == 0
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 200
    runs = db.rows("SELECT outcome, campaigns_seen, campaigns_synced, rows_inserted, rows_updated "
                   "FROM sync_runs ORDER BY started_at")
    assert runs == [("succeeded", 100, 100, 100, 0), ("succeeded", 100, 100, 0, 100)]


def test_three_clients_each_within_its_own_budget(mock_factory, tmp_path):
    from tests.db import Db

    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--seed", "3")
    result = _crawl(mock, "acme,globex,initech", db)
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["total_429"] == 0
    for client in ("acme-corp", "globex", "initech"):  # acme's id comes from clients.toml
        assert platform["syncs"][client] == {f"campaign_{n}": 1 for n in range(1, 101)}
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 300
    # Run in parallel: three clients take about as long as one, not three times as long.
    one = max(result.stat("lower_bound_seconds", c) for c in ("acme-corp", "globex", "initech"))
    assert result.stat("elapsed_seconds", "globex") < 2 * one + 2


def test_short_lived_tokens_are_refreshed_without_failures(mock_factory, db):
    # Tokens announce 3 s but die after 1.5 s: proactive refresh alone is not enough,
    # the crawler must also recover from "Token expired" answers.
    mock = mock_factory("--time-scale", SCALE, "--token-lifetime", "300", "--token-early-expiry", "150",
                        "--seed", "5")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["tokens_issued"] >= 3
    assert result.stat("token_expired", "acme-corp") > 0
    assert result.stat("campaigns_sync_failed", "acme-corp") == 0
    assert set(platform["syncs"]["acme-corp"].values()) == {1} and len(platform["syncs"]["acme-corp"]) == 100


def test_quirks_mode_still_gets_all_campaigns_from_one_page(mock_factory, db):
    mock = mock_factory("--quirks", "--time-scale", SCALE)
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    # has_more stays true, but total was reached: no second page was asked for.
    assert platform["requests"]["acme-corp"]["list"]["200"] == 1
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 100


def test_wrong_password_fails_fast_with_no_list_call(mock_factory, tmp_path):
    from tests.db import Db

    mock = mock_factory("--time-scale", SCALE)
    wrong = "Wrong-Password-42"
    result = _crawl(mock, "acme", Db(tmp_path),
                    extra_env={"AD_PLATFORM_PASSWORD": wrong, "ADCRAWLER_LOG_LEVEL": "DEBUG"})
    assert result.returncode != 0
    assert result.elapsed < 30
    assert result.stats["finish_reason"] == "auth_failed"
    platform = mock.stats()
    assert "list" not in platform["requests"].get("acme-corp", {})
    assert platform["requests"]["acme-corp"]["auth"] == {"401": 1}  # no retry storm
    assert wrong not in result.output and wrong not in json.dumps(result.stats)
    assert "credentials refused" in result.output


def test_hostile_names_are_stored_verbatim(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "10", "--hostile-names", "7",
                        "--sync-503-rate", "0", "--sync-hang-rate", "0", "--list-hang-rate", "0")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    names = dict(db.rows("SELECT campaign_id, name FROM campaigns"))
    assert [names[f"campaign_{n}"] for n in range(1, 8)] == HOSTILE_NAMES
    assert names["campaign_1"] == "Robert'); DROP TABLE campaigns;--"
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 10


def test_malformed_records_are_quarantined_and_the_run_is_partial(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--malformed", "5", "--seed", "9")
    result = _crawl(mock, "acme", db)
    assert result.returncode != 0
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 95
    rejected = db.rows("SELECT reason, payload FROM rejected_records ORDER BY id")
    assert len(rejected) == 5
    assert "negative" in rejected[0][0] and json.loads(rejected[0][1])["clicks"] == -5
    assert db.rows("SELECT outcome, records_rejected FROM sync_runs") == [("partial", 5)]
    assert "client acme-corp: partial" in result.output


def test_permanently_failing_syncs_are_stored_as_failed_and_exit_non_zero(mock_factory, tmp_path):
    from tests.db import Db

    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "5", "--sync-503-rate", "1", "--list-503-rate", "0",
                        "--list-hang-rate", "0")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 1
    assert db.rows("SELECT DISTINCT sync_status, sync_error FROM campaigns") == [("failed", "HTTP 503")]
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 5
    assert result.stat("campaigns_sync_failed", "acme-corp") == 5
    assert result.stats["retry/reason_count/http_503"] == 5 * 6


def test_secrets_never_reach_logs_stats_or_database(mock_factory, tmp_path):
    from tests.db import Db

    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "20", "--token-lifetime", "300", "--seed", "2")
    result = _crawl(mock, "acme", db, extra_env={"ADCRAWLER_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.output[-3000:]
    tokens = mock.stats()["tokens"]
    assert tokens
    stored = json.dumps(db.rows("SELECT * FROM sync_runs"), default=str)
    outputs = {"log": result.output, "stats": json.dumps(result.stats), "database": stored}
    for secret in [DEMO_PASSWORD, "U3VwZXJTZWNyZXQxMjMh", *tokens]:  # base64 of the password, too
        for name, text in outputs.items():
            assert secret not in text, f"secret found in {name}"


def test_pages_that_are_not_json_are_retried_then_recorded(mock_factory, tmp_path):
    from tests.db import Db

    db = Db(tmp_path)
    flaky = mock_factory("--time-scale", SCALE, "--campaigns", "30", "--max-page-size", "10", "--seed", "4",
                         "--list-garbage-rate", "0.3", "--list-503-rate", "0", "--list-hang-rate", "0")
    result = _crawl(flaky, "demo", db)
    assert result.returncode == 0, result.output[-3000:]
    assert result.stat("retries/invalid_json", "demo") > 0
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 30

    broken = mock_factory("--time-scale", SCALE, "--list-garbage-rate", "1", "--list-503-rate", "0",
                          "--list-hang-rate", "0")
    result = _crawl(broken, "demo", Db(tmp_path / "second"))
    assert result.returncode == 1
    assert result.stat("list_failed", "demo") == 1 and result.stat("outcome", "demo") == "failed"
    assert "is not a valid campaign list" in result.output
    assert result.stat("retries/invalid_json", "demo") == 6  # RETRY_TIMES attempts, then recorded


def test_429s_from_a_misjudged_budget_pause_the_client_and_lose_nothing(mock_factory, tmp_path):
    from tests.db import Db

    # The crawler believes in 20 per window, the platform allows 10: 429s must come,
    # and each must pause the client for the platform's Retry-After, not hammer it.
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "60", "--seed", "13")
    result = _crawl(mock, "demo", Db(tmp_path), extra_env={"ADCRAWLER_RATE_LIMIT": "20"})
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 61)}
    seen_429 = result.stat("responses_429", "demo")
    assert seen_429 == platform["total_429"] > 0
    # The limit is cut at most once per window, 20 -> 15 -> 12 -> 9: bursts of about
    # 10, 5 and 2 429s, then none (a fixed 20 gives about 60 here: one per accepted request).
    assert result.stat("rate_limit_effective", "demo") <= 10
    assert seen_429 < 25
    assert "the platform's limit is lower than ADCRAWLER_RATE_LIMIT=20" in result.output
