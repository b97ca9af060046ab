"""Pure logic, driven with an injected clock: no test here sleeps."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from adcrawler.answers import NOT_JSON, Verdict, decide_exception, decide_response, json_body
from adcrawler.backoff import backoff_delay, parse_retry_after
from adcrawler.extensions.progress import eta_seconds
from adcrawler.outcome import Outcome, client_outcome, final_line
from adcrawler.pagination import Listing
from adcrawler.ratelimit import RollingWindowBudget, lower_bound_seconds
from adcrawler.tokens import Token


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- rate budget -----------------------------------------------------------

def test_budget_admits_limit_then_waits_a_window_after_the_first_finish():
    clock = Clock()
    budget = RollingWindowBudget(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert budget.wait_time() == 0
        budget.acquire()
    assert budget.wait_time() == math.inf  # all three in flight: only a finish frees a place
    clock.now += 2
    budget.release()  # finished at 1002
    clock.now += 1
    budget.release()
    budget.release()
    assert budget.wait_time() == pytest.approx(59)  # 1002 + 60 - 1003
    clock.now = 1062
    assert budget.wait_time() == 0


def test_budget_never_exceeds_limit_in_any_window_however_requests_interleave():
    clock = Clock(0)
    rng = random.Random(1)
    budget = RollingWindowBudget(limit=10, window=60, clock=clock)
    in_flight: list[float] = []  # finish times scheduled
    sends: list[float] = []
    while len(sends) < 500:
        clock.now += rng.uniform(0, 3)
        for done in [t for t in in_flight if t <= clock.now]:
            in_flight.remove(done)
            budget.release()
        if budget.wait_time() == 0:
            budget.acquire()
            sends.append(clock.now)
            in_flight.append(clock.now + rng.choice([0.1, 2, 30]))  # fast, sync, hang
    for t in sends:
        assert sum(t <= s < t + 60 for s in sends) <= 10


def test_budget_pause_holds_every_request_of_the_client():
    clock = Clock()
    budget = RollingWindowBudget(limit=10, window=60, clock=clock)
    budget.pause(30)
    assert budget.wait_time() == pytest.approx(30)
    clock.now += 30
    assert budget.wait_time() == 0


def test_429_cuts_the_limit_once_per_window_down_to_one():
    clock = Clock()
    budget = RollingWindowBudget(limit=20, window=60, clock=clock)
    assert budget.rate_limited(pause=60) and budget.limit == 15
    assert not budget.rate_limited(pause=60) and budget.limit == 15  # same window: same news
    assert budget.wait_time() == pytest.approx(60)
    limits = []
    for _ in range(12):
        clock.now += 60
        budget.rate_limited(pause=1)
        limits.append(budget.limit)
    assert limits[:4] == [12, 9, 7, 6] and limits[-1] == 1


def test_budget_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        RollingWindowBudget(0, 60)
    with pytest.raises(ValueError):
        RollingWindowBudget(10, 0)


@pytest.mark.parametrize("requests, expected", [(0, 0), (1, 2), (10, 2), (11, 62), (101, 602), (137, 782)])
def test_lower_bound_includes_the_last_answers_latency(requests, expected):
    assert lower_bound_seconds(requests, 10, 60, last_latency=2) == expected


# -- Retry-After -------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize("header, body, expected", [
    ("60", None, 60),
    (b"0.6", None, 0.6),
    (None, {"retry_after": 60}, 60),
    ("12", {"retry_after": 60}, 12),  # the header wins
    (None, None, None),
    ("", {}, None),
    ("0", None, 0),
    ("-5", {"retry_after": 7}, 7),  # negative header ignored, body used
    ("soon", {"retry_after": "later"}, None),
    ("nan", None, None),
    ("99999999", None, 300),  # capped
    ("inf", None, 300),
    (None, {"retry_after": True}, None),
    (None, ["not", "a", "dict"], None),
])
def test_parse_retry_after(header, body, expected):
    assert parse_retry_after(header, body, NOW, cap=300) == expected


def test_retry_after_as_http_date():
    when = datetime.fromtimestamp(NOW + 90, timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), None, NOW, cap=300) == pytest.approx(90)
    past = datetime.fromtimestamp(NOW - 90, timezone.utc)
    assert parse_retry_after(format_datetime(past, usegmt=True), None, NOW, cap=300) == 0


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(3)
    delays = [backoff_delay(n, base=1, cap=30, rng=rng) for n in range(1, 10)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(15 <= d <= 30 for d in delays[5:])
    assert len({round(backoff_delay(4, 1, 30, rng), 6) for _ in range(20)}) > 1


# -- token expiry -------------------------------------------------------------

def test_token_refreshes_before_expiry_with_a_bounded_margin():
    token = Token.from_payload({"access_token": "t", "token_type": "Bearer", "expires_in": 3600}, now=0)
    assert not token.needs_refresh(now=3500, margin=60)
    assert token.needs_refresh(now=3541, margin=60)
    short = Token.from_payload({"access_token": "t", "expires_in": 10}, now=0)
    assert not short.needs_refresh(now=5, margin=60)  # margin capped at a tenth of the life
    assert short.needs_refresh(now=9.1, margin=60)


@pytest.mark.parametrize("payload", [
    [], {}, {"access_token": ""}, {"access_token": "t", "token_type": "MAC"},
    {"access_token": "t", "expires_in": "soon"}, {"access_token": "t", "expires_in": 0},
])
def test_token_payload_errors(payload):
    with pytest.raises(ValueError):
        Token.from_payload(payload, now=0)


def test_token_repr_hides_the_value():
    assert "s3cr3t" not in repr(Token.from_payload({"access_token": "s3cr3t"}, now=0))


# -- pagination ---------------------------------------------------------------

def _page(listing: Listing, page: int, ids: list[str], limit=10, has_more=True, total=100) -> int | None:
    listing.announce(total)
    new = sum(listing.admit(f"id:{i}") == "new" for i in ids)
    return listing.next_page(page, len(ids), new, limit, has_more)


def test_listing_stops_at_the_announced_total_whatever_has_more_says():
    listing = Listing(page_size=100)
    assert _page(listing, 1, [f"c{n}" for n in range(1, 101)], limit=100) is None  # quirks: one page
    assert listing.seen == 100 and listing.missing == 0


def test_listing_follows_pages_and_never_starts_a_page_past_the_total():
    listing = Listing(page_size=10)
    pages = [1]
    while (after := _page(listing, pages[-1], [f"c{n}" for n in range(pages[-1] * 10 - 9, pages[-1] * 10 + 1)])):
        pages.append(after)
    assert pages == list(range(1, 11)) and listing.seen == 100


def test_invented_records_past_the_total_are_not_taken():
    listing = Listing(page_size=250)
    listing.announce(100)
    verdicts = [listing.admit(f"id:c{n}") for n in range(1, 251)]
    assert verdicts.count("new") == 100 and verdicts.count("beyond_total") == 150


def test_quarantined_records_count_toward_the_total():
    listing = Listing(page_size=100)
    listing.announce(3)
    for key in ("id:c1", "sha1:abc", "id:c; DROP"):  # two of them will be quarantined
        assert listing.admit(key) == "new"
    assert listing.next_page(1, 3, 3, 100, True) is None and listing.missing == 0


def test_a_page_without_a_new_campaign_ends_the_listing_with_a_reason():
    listing = Listing(page_size=10)  # a platform that ignores `page`
    assert _page(listing, 1, [f"c{n}" for n in range(1, 11)]) == 2
    assert _page(listing, 2, [f"c{n}" for n in range(1, 11)]) is None
    assert listing.stop_reason == "page 2 brought no new campaign" and listing.missing == 90


def test_the_listing_ends_within_the_page_budget_whatever_the_platform_says():
    listing = Listing(page_size=10)
    pages = 0
    page = 1
    while page is not None and pages < 100:  # one new id per page, has_more forever
        pages += 1
        page = _page(listing, page, [f"c{pages}"] + [f"c{n}" for n in range(1, 10)], total=100)
    assert pages <= math.ceil(100 / 10) + 2 and listing.stop_reason


@pytest.mark.parametrize("received, has_more, expected", [(4, True, None), (10, False, None), (0, True, None),
                                                          (10, True, 3), (10, None, 3)])
def test_short_pages_and_has_more(received, has_more, expected):
    listing = Listing(page_size=10)
    _page(listing, 1, [f"a{n}" for n in range(10)])
    assert _page(listing, 2, [f"b{n}" for n in range(received)], has_more=has_more) == expected


def test_duplicates_across_pages_count_once():
    listing = Listing(page_size=10)
    _page(listing, 1, [f"c{n}" for n in range(1, 11)])
    assert _page(listing, 2, [f"c{n}" for n in range(10, 20)]) == 3  # c10 again: 9 new, go on
    assert listing.seen == 19


# -- the verdict on an answer -------------------------------------------------

CODES = frozenset({500, 502, 503, 504, 408})


def _decide(endpoint, status, body=b"{}", header=None):
    return decide_response(endpoint, status, header, body, CODES, NOW, 300)


def test_every_answer_has_one_verdict():
    assert _decide("list", 200).verdict is Verdict.OK
    assert _decide("list", 200, b"<html>").verdict is Verdict.RETRY
    assert _decide("sync", 503).reason == "http_503" and _decide("sync", 503).verdict is Verdict.RETRY
    assert _decide("sync", 401).verdict is Verdict.REAUTH
    assert _decide("auth", 401).verdict is Verdict.REFUSED and _decide("auth", 403).verdict is Verdict.REFUSED
    assert _decide("auth", 503).verdict is Verdict.RETRY and _decide("auth", 429).verdict is Verdict.RATE_LIMITED
    assert _decide("sync", 404).verdict is Verdict.FATAL and _decide("sync", 403).verdict is Verdict.FATAL


def test_retry_after_is_honoured_on_503_as_on_429():
    assert _decide("sync", 503, header="7").wait == 7
    assert _decide("sync", 429, b'{"retry_after": 60}').wait == 60  # body only: the inherited platform
    assert _decide("sync", 503, b'{"retry_after": 4}').wait == 4
    assert _decide("sync", 503).wait is None  # nothing said: the caller backs off


def test_exceptions_are_transient_or_not():
    from scrapy.exceptions import DownloadTimeoutError, IgnoreRequest
    from twisted.internet.error import ConnectionLost

    assert decide_exception(DownloadTimeoutError()).verdict is Verdict.RETRY
    assert decide_exception(ConnectionLost()).verdict is Verdict.RETRY
    assert decide_exception(IgnoreRequest()).verdict is Verdict.FATAL
    assert json_body(b"\xff\xfe") is NOT_JSON and json_body(b"[1]") == [1]


# -- outcomes --------------------------------------------------------------------

def _outcome(stopped_early=False, **stats):
    return client_outcome(lambda name: stats.get(name, 0), stopped_early)


def test_an_outcome_names_its_reasons():
    full = dict(campaigns_seen=100, campaigns_expected=100, campaigns_stored=100, list_pages=1)
    assert _outcome(**full) == Outcome("succeeded")
    assert _outcome(**{**full, "campaigns_flagged": 30}).name == "succeeded"  # flags never make it partial
    partial = _outcome(**{**full, "campaigns_seen": 97, "campaigns_stored": 95, "campaigns_quarantined": 2,
                          "campaigns_sync_failed": 1})
    assert partial == Outcome("partial",
                              ("2 quarantined", "1 sync failed", "3 of 100 announced campaigns never listed"))
    assert _outcome(auth_failed=1, auth_failure="credentials refused").describe() == "failed (credentials refused)"
    assert _outcome(list_failed=1).describe() == "failed (the campaign list could not be read)"
    assert _outcome(locked=1).name == "skipped"
    assert _outcome(True, **{**full, "campaigns_stored": 60, "campaigns_not_attempted": 40}).reasons == (
        "40 not synced before the crawl stopped",)


def test_the_final_line_says_what_to_do_about_each_client():
    ok, line = final_line({"a": Outcome("succeeded"), "b": Outcome("skipped")}, "finished")
    assert ok and line == "Sync complete: 1 client(s) succeeded; skipped (another run holds them): b"
    ok, line = final_line({"acme": Outcome("partial", ("2 quarantined", "1 sync failed")),
                           "globex": Outcome("failed", ("credentials refused",))}, "finished")
    assert not ok and line == ("Sync incomplete: acme: partial (2 quarantined, 1 sync failed); "
                               "globex: failed (credentials refused)")
    assert not final_line({"a": Outcome("succeeded")}, "shutdown")[0]


def test_eta_is_never_zero_while_work_remains():
    assert eta_seconds(0, 100, 150, 10, 60) == 0
    assert eta_seconds(1, 99, 150, 10, 60) == 6  # one request's share of a window
    assert eta_seconds(95, 5, 5, 10, 60) == 9 * 60 + 6
