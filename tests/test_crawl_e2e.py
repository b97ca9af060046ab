"""End to end: the real `scrapy crawl campaigns` against a real simulator process.

The simulator runs at time scale 0.01 (a 60 s window lasts 0.6 s) and the
crawler gets the matching settings, so these runs exercise the real protocol,
faults included, in seconds.
"""

from __future__ import annotations

import json
import re
import time

from harness.runner import DEMO_PASSWORD, run_crawl
from mock_api.campaigns import HOSTILE_NAMES
from tests.conftest import SCALE, assert_every_served_id_kept, last_line, stored_ids
from tests.db import Db


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
    assert "Sync complete: 1 client(s) succeeded" in last_line(first)

    # A new process cannot see the requests of the last one still in the platform's window:
    # real runs are hours apart; these wait out one window (0.6 s at this time scale).
    time.sleep(60 * float(SCALE))
    second = _crawl(mock, "demo", db)
    assert second.returncode == 0, second.output[-3000:]
    platform = mock.stats()
    assert platform["total_429"] == 0
    assert platform["syncs"]["demo"] == {f"campaign_{n}": 2 for n in range(1, 101)}
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 100
    after = dict(db.rows("SELECT campaign_id, impressions FROM campaigns"))
    assert all(after[c] > clicks_before[c] for c in after)  # metrics were updated
    assert second.stat("rows_updated", "demo") == 100 and second.stat("rows_inserted", "demo") == 0
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics") == 200
    runs = db.rows("SELECT outcome, campaigns_seen, campaigns_synced, rows_inserted, rows_updated "
                   "FROM sync_runs ORDER BY started_at")
    assert runs == [("succeeded", 100, 100, 100, 0), ("succeeded", 100, 100, 0, 100)]


def test_three_clients_each_within_its_own_budget(mock_factory, tmp_path):
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


def test_short_lived_and_revoked_tokens_are_replaced_without_failures(mock_factory, db):
    # Tokens announce 3 s but die after 1.5 s, and a tenth of the API calls revoke
    # the token they carry: proactive refresh alone is not enough.
    mock = mock_factory("--time-scale", SCALE, "--token-lifetime", "300", "--token-early-expiry", "150",
                        "--seed", "5", "--sync-401-rate", "0.1")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["tokens_issued"] >= 3 and platform["revoked"] > 0
    assert result.stat("token_rejected", "acme-corp") > 0
    assert result.stat("campaigns_sync_failed", "acme-corp") == 0
    assert set(platform["syncs"]["acme-corp"].values()) == {1} and len(platform["syncs"]["acme-corp"]) == 100


# -- the inherited platform (--quirks) ---------------------------------------------------------

def test_the_inherited_platform_every_campaign_once_none_invented(mock_factory, db):
    mock = mock_factory("--quirks", "--time-scale", SCALE)
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["total_429"] == 0
    # has_more stays true, but total was reached: one list call, one sync per campaign.
    assert platform["requests"]["acme-corp"]["list"] == {"200": 1}
    assert platform["syncs"]["acme-corp"] == {f"campaign_{n}": 1 for n in range(1, 101)}
    assert stored_ids(db, "acme-corp") == {f"campaign_{n}" for n in range(1, 101)}
    assert db.scalar("SELECT COUNT(*) FROM rejected_records") == 0
    # Its independent draws make clicks exceed impressions now and then: kept, flagged, never partial.
    flagged = db.scalar("SELECT COUNT(*) FROM campaigns WHERE quality_flags IS NOT NULL")
    assert flagged == result.stat("campaigns_flagged", "acme-corp") > 0
    assert result.stat("outcome", "acme-corp") == "succeeded"


def test_the_inherited_platform_in_small_pages_and_oversized_ones(mock_factory, tmp_path):
    # Pages of 10: its counter hangs every 10th list call and fails every other 5th.
    mock = mock_factory("--quirks", "--time-scale", SCALE)
    small = _crawl(mock, "acme", Db(tmp_path / "small"), settings={"ADCRAWLER_PAGE_SIZE": "10"})
    assert small.returncode == 0, small.output[-3000:]
    lists = mock.stats()["requests"]["acme-corp"]["list"]
    assert lists["200"] == 10 and lists.get("503", 0) >= 1 and lists.get("hang", 0) >= 1
    assert stored_ids(Db(tmp_path / "small"), "acme-corp") == {f"campaign_{n}" for n in range(1, 101)}
    # Pages of 250: 150 campaigns past the announced total on the first page. Invented,
    # or a total that is wrong: the crawler cannot tell, so it keeps what was sent and
    # says so, but asks for no page past the total.
    mock.reset()
    big = _crawl(mock, "acme", Db(tmp_path / "big"), settings={"ADCRAWLER_PAGE_SIZE": "250"})
    assert big.returncode == 0, big.output[-3000:]
    assert stored_ids(Db(tmp_path / "big"), "acme-corp") == {f"campaign_{n}" for n in range(1, 251)}
    assert set(mock.stats()["syncs"]["acme-corp"]) == {f"campaign_{n}" for n in range(1, 251)}
    assert big.stat("campaigns_beyond_total", "acme-corp") == 150
    assert "beyond the 100 announced; all kept" in big.output
    assert mock.stats()["requests"]["acme-corp"]["list"] == {"200": 1}


# -- what real platforms send ------------------------------------------------------------------

def test_numeric_strings_unknown_fields_and_statuses_are_stored(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "30", "--numeric-strings", "1",
                        "--unknown-fields", "--unknown-statuses", "3")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 30
    raw = db.rows("SELECT raw FROM campaigns WHERE campaign_id = 'campaign_1'")[0][0]
    raw = json.loads(raw) if isinstance(raw, str) else raw
    assert raw["objective"] == "CONVERSIONS" and isinstance(raw["impressions"], str)
    assert db.scalar("SELECT impressions FROM campaigns WHERE campaign_id = 'campaign_1'") == int(raw["impressions"])
    statuses = dict(db.rows("SELECT campaign_id, status FROM campaigns "
                            "WHERE CAST(quality_flags AS TEXT) = '[\"unknown_status\"]'"))
    assert sorted(statuses.values()) == ["PAUSED_BY_POLICY", "in_review", "learning"]
    assert_every_served_id_kept(mock, db, "acme-corp")
    assert "Sync complete" in last_line(result)


def test_implausible_values_are_flagged_not_rejected(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "20", "--implausible", "4")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    flags = {c: db.json(f) for c, f in db.rows("SELECT campaign_id, quality_flags FROM campaigns "
                                                 "WHERE quality_flags IS NOT NULL")}
    assert flags == {"campaign_17": ["clicks_exceed_impressions"], "campaign_18": ["conversions_exceed_clicks"],
                     "campaign_19": ["conversions_exceed_clicks", "negative_clicks"],
                     "campaign_20": ["negative_budget"]}
    assert result.stat("flags/negative_budget", "acme-corp") == 1 and result.stat("outcome", "acme-corp") == "succeeded"


def test_values_out_of_range_are_quarantined_alone_and_still_synced(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "53", "--out-of-range", "4")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 1
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 49
    reasons = dict(db.rows("SELECT campaign_id, reason FROM rejected_records"))
    assert set(reasons) == {f"campaign_{n}" for n in range(50, 54)}
    assert "out of the storable range" in reasons["campaign_50"]
    assert len(mock.stats()["syncs"]["acme-corp"]) == 53  # only our copy could not be stored
    assert_every_served_id_kept(mock, db, "acme-corp")
    assert last_line(result).endswith("Sync incomplete: acme-corp: partial (4 quarantined)")
    assert db.rows("SELECT outcome, outcome_reasons, records_rejected FROM sync_runs") == [
        ("partial", "4 quarantined", 4)]


def test_records_that_cannot_be_stored_are_quarantined_and_the_page_goes_on(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--seed", "9", "--campaigns", "40", "--malformed", "8",
                        "--max-page-size", "20")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 1
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 32
    assert db.scalar("SELECT COUNT(*) FROM rejected_records") == 8
    assert_every_served_id_kept(mock, db, "acme-corp")
    payloads = [json.loads(p) for (p,) in db.rows("SELECT payload FROM rejected_records")]
    assert "campaign_35" in payloads  # the bare string, kept verbatim
    assert "acme-corp: partial (8 quarantined)" in last_line(result)


def test_a_platform_that_ignores_page_ends_the_listing_and_says_so(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--ignore-page", "--max-page-size", "10")
    result = _crawl(mock, "acme", db, timeout=120)
    assert result.returncode == 1
    assert mock.stats()["requests"]["acme-corp"]["list"] == {"200": 2}
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 10
    assert "page 2 brought no new campaign" in result.output
    assert last_line(result).endswith("acme-corp: partial (90 of 100 announced campaigns never listed)")


def test_progress_counts_against_known_work(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--seed", "2", "--campaigns", "100", "--max-page-size", "20")
    # Per client at DEBUG; one line for the whole run otherwise.
    result = run_crawl(mock.url, "acme", tmp_path, extra_env={"LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.output[-3000:]
    whole = re.findall(r"Progress: ([01])/1 clients done.*, (\d+)/(\d+) campaigns done", result.output)
    assert whole and all(int(done) <= int(known) <= 100 for _, done, known in whole)
    lines = re.findall(r"Progress acme-corp: (\d+)/(\d+|\?) done .* ETA (\d+)s", result.output)
    assert len(lines) >= 3
    for done, known, eta in lines:
        assert known == "?" or int(done) <= int(known) <= 100
        if known != "?" and int(done) < int(known):
            assert int(eta) > 0


# -- failures, credentials, hostile input ------------------------------------------------------

def test_wrong_password_fails_fast_with_no_list_call(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--quiet")
    wrong = "Wrong-Password-42"
    result = _crawl(mock, "acme", Db(tmp_path),
                    extra_env={"AD_PLATFORM_PASSWORD": wrong, "LOG_LEVEL": "DEBUG"})
    assert result.returncode == 1
    assert result.elapsed < 30
    assert result.stats["finish_reason"] == "auth_failed"
    platform = mock.stats()
    assert "list" not in platform["requests"].get("acme-corp", {})
    assert platform["requests"]["acme-corp"]["auth"] == {"401": 1}  # no retry storm
    assert wrong not in result.output and wrong not in json.dumps(result.stats)
    assert "acme-corp: failed (credentials refused by the platform (HTTP 401)" in last_line(result)


def test_hostile_names_are_stored_verbatim(mock_factory, db):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "10", "--hostile-names", "7")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    names = dict(db.rows("SELECT campaign_id, name FROM campaigns"))
    assert [names[f"campaign_{n}"] for n in range(1, 8)] == HOSTILE_NAMES
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 10


def test_a_sync_endpoint_that_always_fails_is_waited_out_then_every_campaign_is_stored_as_failed(mock_factory,
                                                                                                   tmp_path):
    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "5", "--sync-503-rate", "1")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 1
    [(status, error)] = db.rows("SELECT DISTINCT sync_status, sync_error FROM campaigns")
    assert status == "failed" and re.fullmatch(r"platform unavailable since \d\d:\d\d:\d\d UTC", error), error
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 5
    assert result.stat("campaigns_sync_failed", "acme-corp") == 5 and result.stat("platform_unavailable", "acme-corp")
    # Five failures, then one probe per backoff (0.01 s doubling to 0.3 s) for the outage limit
    # (6 s at 0.01): not every request's six retries on every pass (90).
    assert result.stats["retry/reason_count/http_503"] <= 5 + 6 / 0.15 + 5
    assert re.search(r"acme-corp: partial \(5 sync failed, platform unavailable since \S+ UTC\)$", last_line(result))


def test_unlucky_syncs_get_another_pass_and_the_run_succeeds(mock_factory, tmp_path):
    db = Db(tmp_path)
    # Every tenth campaign's first seven sync calls fail: one call and six retries, the whole first pass
    # (three requests failing again and again are no outage).
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "30", "--sync-fail-first", "7")
    result = _crawl(mock, "acme", db)
    assert result.returncode == 0, result.output[-3000:]
    assert result.stat("campaigns_recovered", "acme-corp") == 3 and result.stat("sync_passes", "acme-corp") == 1
    assert "the platform seems down" not in result.output
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 30
    assert set(mock.stats()["syncs"]["acme-corp"].values()) == {1}


def test_pages_that_are_not_json_are_retried_then_recorded(mock_factory, tmp_path):
    flaky = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "30", "--max-page-size", "10",
                         "--seed", "4", "--list-garbage-rate", "0.3")
    result = _crawl(flaky, "demo", Db(tmp_path))
    assert result.returncode == 0, result.output[-3000:]
    assert result.stat("retries/invalid_json", "demo") > 0
    assert Db(tmp_path).scalar("SELECT COUNT(*) FROM campaigns") == 30

    broken = mock_factory("--time-scale", SCALE, "--quiet", "--list-garbage-rate", "1")
    result = _crawl(broken, "demo", Db(tmp_path / "second"))
    assert result.returncode == 1
    assert result.stat("list_failed", "demo") == 1 and result.stat("outcome", "demo") == "failed"
    assert "demo: failed (the campaign list could not be read)" in last_line(result)
    assert result.stat("retries/invalid_json", "demo") == 6  # ADCRAWLER_RETRY_TIMES, then recorded


def test_429s_from_a_misjudged_budget_pause_the_client_and_lose_nothing(mock_factory, tmp_path):
    # The crawler believes in 20 per window, the platform allows 10: 429s must come,
    # and each must pause the client for the platform's Retry-After, not hammer it.
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "60", "--seed", "13")
    result = _crawl(mock, "demo", Db(tmp_path), extra_env={"ADCRAWLER_RATE_LIMIT": "20"})
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert platform["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 61)}
    seen_429 = result.stat("responses_429", "demo")
    assert seen_429 == platform["requests"]["demo"]["sync"].get("429", 0) + \
        platform["requests"]["demo"]["list"].get("429", 0) > 0
    # The limit is halved at most once per window, 20 -> 10: sends spaced by a little more
    # than an answer's latency meet few 429s before the cut (a fixed 20 gives about 60 here).
    assert result.stat("rate_limit_effective", "demo") <= 10
    assert seen_429 < 25
    assert "the platform's limit is lower than 20 per" in result.output


def test_secrets_never_reach_logs_stats_or_database(mock_factory, tmp_path):
    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "20", "--token-lifetime", "300", "--seed", "2")
    result = _crawl(mock, "acme", db, extra_env={"LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.output[-3000:]
    tokens = mock.stats()["tokens"]
    assert tokens
    stored = json.dumps(db.rows("SELECT * FROM sync_runs"), default=str)
    [run_log] = (tmp_path / "logs").glob("*.log")  # the run's own copy of its log
    assert "Sync complete" in run_log.read_text()
    outputs = {"log": result.output, "run log": run_log.read_text(), "stats": json.dumps(result.stats),
               "database": stored}
    for secret in [DEMO_PASSWORD, "U3VwZXJTZWNyZXQxMjMh", *tokens]:  # base64 of the password, too
        for name, text in outputs.items():
            assert secret not in text, f"secret found in {name}"
