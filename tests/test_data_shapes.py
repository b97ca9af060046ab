"""End to end: platforms whose records and pagination take shapes no contract names.

Each test runs the real crawl against the simulator with one knob for one
shape and holds the invariant: the distinct ids in ``campaigns`` plus the
quarantine are the distinct ids the platform served, and the outcome, the
exit status and the last line say what happened.
"""

from __future__ import annotations

from decimal import Decimal

from harness.runner import run_crawl
from mock_api.campaigns import make_campaign
from tests.conftest import QUIET, assert_every_served_id_kept, last_line, stored_ids
from tests.db import Db

CLIENT = "acme-corp"  # the acme slug's client id


def _crawl(mock, db, **kwargs):
    return run_crawl(mock.url, "acme", db.workdir, database_url=db.url, **kwargs)


def _ids(n: int) -> set[str]:
    return {f"campaign_{k}" for k in range(1, n + 1)}


def test_values_not_computed_yet_are_null_flagged_stored_and_synced(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "20", "--missing-values", "8")
    result = _crawl(mock, db)
    assert result.returncode == 0, result.output[-3000:]
    assert stored_ids(db, CLIENT) == _ids(20) and db.scalar("SELECT COUNT(*) FROM rejected_records") == 0
    assert set(mock.stats()["syncs"][CLIENT]) == _ids(20)
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 20
    # campaign_13 is sent with impressions null, campaign_20 with every metric null; never 0.
    assert db.rows("SELECT impressions, clicks FROM campaigns WHERE campaign_id = 'campaign_13'")[0][0] is None
    assert db.rows("SELECT impressions, clicks, conversions FROM campaigns WHERE campaign_id = 'campaign_20'") == [
        (None, None, None)]
    assert db.rows("SELECT impressions, clicks, conversions FROM campaign_metrics "
                   "WHERE campaign_id = 'campaign_20'") == [(None, None, None)]
    flags = {c: db.json(f) for c, f in db.rows("SELECT campaign_id, quality_flags FROM campaigns "
                                                 "WHERE quality_flags IS NOT NULL")}
    assert set(flags) == {f"campaign_{n}" for n in range(13, 21)}
    assert flags["campaign_15"] == ["missing_conversions"] and flags["campaign_17"] == ["missing_name"]
    assert_every_served_id_kept(mock, db, CLIENT)
    assert result.stat("outcome", CLIENT) == "succeeded" and "Sync complete" in last_line(result)


def test_a_change_in_an_unmodelled_field_updates_the_row(mock_factory, tmp_path):
    db = Db(tmp_path)
    mock = mock_factory(*QUIET, "--campaigns", "10", "--changing-fields")
    assert _crawl(mock, db).returncode == 0
    first = dict(db.rows("SELECT campaign_id, fetched_at FROM campaigns"))
    second = _crawl(mock, db)
    assert second.returncode == 0, second.output[-3000:]
    revisions = {c: db.json(raw)["revision"] for c, raw in db.rows("SELECT campaign_id, raw FROM campaigns")}
    assert revisions == {c: 2 for c in _ids(10)}  # what the second call sent
    after = dict(db.rows("SELECT campaign_id, fetched_at FROM campaigns"))
    assert all(after[c] > first[c] for c in first)
    assert second.stat("rows_updated", CLIENT) == 10


def test_a_total_of_zero_drops_nothing(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "10", "--announced-total", "0")
    result = _crawl(mock, db)
    assert result.returncode == 0, result.output[-3000:]
    assert stored_ids(db, CLIENT) == _ids(10) and set(mock.stats()["syncs"][CLIENT]) == _ids(10)
    assert result.stat("campaigns_beyond_total", CLIENT) == 10
    assert "beyond the 0 announced" in result.output
    assert_every_served_id_kept(mock, db, CLIENT)


def test_a_page_cap_that_ignores_limit_lists_every_page(mock_factory, tmp_path):
    db = Db(tmp_path)
    mock = mock_factory(*QUIET, "--campaigns", "100", "--page-cap", "30")  # the crawler asks for 100
    result = _crawl(mock, db)
    assert result.returncode == 0, result.output[-3000:]
    assert mock.stats()["requests"][CLIENT]["list"] == {"200": 4}
    assert stored_ids(db, CLIENT) == _ids(100)
    assert_every_served_id_kept(mock, db, CLIENT)
    assert result.stat("outcome", CLIENT) == "succeeded"


def test_a_list_without_end_stops_at_the_bound_and_the_client_is_partial(mock_factory, tmp_path):
    for total in ("none", str(10**9)):
        db = Db(tmp_path / total)
        mock = mock_factory(*QUIET, "--campaigns", "50", "--endless", "--announced-total", total)
        result = _crawl(mock, db, settings={"ADCRAWLER_MAX_CAMPAIGNS": "250"})
        assert result.returncode == 1, result.output[-3000:]
        assert mock.stats()["requests"][CLIENT]["list"] == {"200": 3}  # pages of 100: the bound is on the third
        assert stored_ids(db, CLIENT) == _ids(300)  # the whole third page is kept
        assert_every_served_id_kept(mock, db, CLIENT)
        assert "listing stopped at 250 campaigns (ADCRAWLER_MAX_CAMPAIGNS)" in last_line(result)
        assert db.scalar("SELECT outcome FROM sync_runs") == "partial"


def test_records_past_the_parsers_limits_are_quarantined_alone_and_alerted_once(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "30", "--parser-limits", "2")
    first = _crawl(mock, db)
    assert first.returncode == 1, first.output[-3000:]
    assert stored_ids(db, CLIENT) == _ids(28)
    reasons = dict(db.rows("SELECT campaign_id, reason FROM rejected_records"))
    assert set(reasons) == {"campaign_29", "campaign_30"}
    assert "nested deeper" in reasons["campaign_29"] and "number longer" in reasons["campaign_30"]
    payload = db.scalar("SELECT payload FROM rejected_records WHERE campaign_id = 'campaign_30'")
    assert "9" * 5000 in payload  # kept as sent
    assert set(mock.stats()["syncs"][CLIENT]) == _ids(30)  # their ids are still synced
    assert_every_served_id_kept(mock, db, CLIENT)
    assert last_line(first).endswith("acme-corp: partial (2 quarantined)")
    # Sent again, unchanged: recorded and counted, not alerted on again.
    second = _crawl(mock, db)
    assert second.returncode == 0, second.output[-3000:]
    assert second.stat("campaigns_quarantined", CLIENT) == 2
    assert second.stat("campaigns_quarantined_again", CLIENT) == 2
    assert db.scalar("SELECT COUNT(*) FROM rejected_records") == 4
    assert db.rows("SELECT outcome, records_rejected FROM sync_runs ORDER BY started_at") == [
        ("partial", 2), ("succeeded", 2)]


def test_odd_numbers_and_dates_are_treated_alike_by_both_backends(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "12", "--odd-values", "6")
    result = _crawl(mock, db)
    assert result.returncode == 1, result.output[-3000:]
    budgets = {c: Decimal(str(b)) for c, b in db.rows("SELECT campaign_id, budget FROM campaigns "
                                                       "WHERE campaign_id IN ('campaign_7', 'campaign_8', "
                                                       "'campaign_9', 'campaign_12')")}
    assert budgets == {"campaign_7": Decimal("0.00"), "campaign_8": Decimal("12.34"),
                       "campaign_9": Decimal("99999999999999.99"), "campaign_12": Decimal("0.00")}
    flags = {c: db.json(f) for c, f in db.rows("SELECT campaign_id, quality_flags FROM campaigns "
                                                 "WHERE quality_flags IS NOT NULL")}
    assert flags == {"campaign_7": ["budget_rounded"], "campaign_8": ["budget_rounded"],
                     "campaign_12": ["budget_rounded"]}
    raw = db.json(db.scalar("SELECT raw FROM campaigns WHERE campaign_id = 'campaign_8'"))
    assert str(raw["budget"]) == "12.345"  # as sent
    quarantined = dict(db.rows("SELECT campaign_id, reason FROM rejected_records"))
    assert set(quarantined) == {"campaign_10", "campaign_11"}
    assert all("outside years 1-9999" in reason for reason in quarantined.values())
    assert_every_served_id_kept(mock, db, CLIENT)


def test_numeric_strings_with_implausible_values_are_served_and_stored(mock_factory, tmp_path):
    db = Db(tmp_path)
    mock = mock_factory(*QUIET, "--campaigns", "40", "--numeric-strings", "0.5", "--implausible", "5")
    result = _crawl(mock, db)
    assert result.returncode == 0, result.output[-3000:]
    assert stored_ids(db, CLIENT) == _ids(40)
    assert_every_served_id_kept(mock, db, CLIENT)


def test_a_campaign_listed_twice_with_other_contents_keeps_the_later_one_and_says_so(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "20", "--max-page-size", "10", "--shifting-list")
    result = run_crawl(mock.url, "demo", db.workdir, database_url=db.url)
    assert result.returncode == 0, result.output[-3000:]
    assert result.stat("campaigns_conflicting", "demo") == 1
    assert "campaign_10 listed twice with other contents" in result.output
    assert mock.stats()["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 21)}  # synced once
    # The version stored is the later one: the platform served campaign_10 twice, its metrics grown.
    [(raw,)] = db.rows("SELECT raw FROM campaigns WHERE campaign_id = 'campaign_10'")
    later = make_campaign("demo", 10, 1, 0)
    assert Db.json(raw)["impressions"] == later["impressions"]
    [(stats,)] = db.rows("SELECT stats FROM sync_runs")
    assert Db.json(stats)["adcrawler/client/demo/campaigns_conflicting"] == 1  # in the run record
