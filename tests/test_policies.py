"""Pure logic, driven with an injected clock: no test here sleeps."""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from adcrawler.auth import Token
from adcrawler.budget import (
    RollingWindowBudget,
    Signals,
    lower_bound_seconds,
    parse_retry_after,
    read_signals,
    reset_delta,
)
from adcrawler.extensions.progress import eta_seconds
from adcrawler.ledger import ClientRun, FailedSync, Outcome, Result, State, client_outcome, final_line
from adcrawler.listing import Listing
from adcrawler.registry import Client
from adcrawler.retry import NOT_JSON, Decision, RetryPolicy, Verdict, backoff_delay, json_body, judge, judge_exception
from tests.conftest import Clock

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


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


def test_429_halves_the_limit_once_per_window_down_to_one():
    clock = Clock()
    budget = RollingWindowBudget(limit=20, window=60, clock=clock)
    assert budget.rate_limited(pause=60) and budget.limit == 10
    assert not budget.rate_limited(pause=60) and budget.limit == 10  # same window: same news
    assert budget.wait_time() == pytest.approx(60)
    limits = []
    for _ in range(5):
        clock.now += 60
        budget.rate_limited(pause=1)
        limits.append(budget.limit)
    assert limits == [5, 2, 1, 1, 1]


def test_a_lowered_limit_is_probed_back_up_and_a_failed_probe_waits_twice_as_long():
    clock = Clock(0)
    budget = RollingWindowBudget(limit=10, window=60, clock=clock, probe_windows=10)
    budget.rate_limited(pause=60)
    assert budget.limit == 5
    clock.now += 9 * 60
    budget.wait_time()
    assert budget.limit == 5  # not yet: ten quiet windows
    clock.now += 60
    budget.wait_time()
    assert budget.limit == 8  # half the way back (rounded up)
    budget.rate_limited(pause=1)  # the squeeze lasts: back to what held
    assert budget.limit == 5
    clock.now += 10 * 60
    budget.wait_time()
    assert budget.limit == 5  # the next probe waits twenty windows
    clock.now += 10 * 60
    budget.wait_time()
    assert budget.limit == 8
    clock.now += 20 * 60  # that probe held: on toward the configured limit
    budget.wait_time()
    assert budget.limit == 9
    clock.now += 20 * 60
    budget.wait_time()
    assert budget.limit == 10


def _told(clock, **kwargs):
    budget = RollingWindowBudget(limit=10, window=60, clock=clock, ceiling=kwargs.pop("ceiling", None))
    budget.observe(Signals(**kwargs))
    return budget


def test_a_stated_policy_is_adopted_lower_at_once_higher_up_to_the_ceiling():
    clock = Clock(0)
    assert _told(clock, policies=((5, 60.0),)).limit == 5
    assert _told(clock, policies=((20, 60.0),)).limit == 10  # no ceiling given: the configured limit
    assert _told(clock, policies=((20, 60.0),), ceiling=15).limit == 15
    # A policy without a window (X-RateLimit-Limit) is per the configured window; another window scales the ceiling.
    assert (_told(clock, policies=((7, None),)).limit, _told(clock, policies=((7, None),)).window) == (7, 60)
    assert _told(clock, policies=((1000, 3600.0),), ceiling=20).limit == 1000


def test_every_stated_policy_holds():
    clock = Clock(0)
    budget = _told(clock, policies=((3, 10.0), (5, 60.0)), ceiling=100)
    sends = []
    while clock.now < 120:
        if budget.wait_time() == 0:
            budget.acquire()
            sends.append(clock.now)
            budget.release()
        clock.now += 0.5
    assert all(sum(t <= s < t + 10 for s in sends) <= 3 for t in sends)
    assert all(sum(t <= s < t + 60 for s in sends) <= 5 for t in sends) and len(sends) >= 9


def test_remaining_zero_with_a_reset_holds_every_request_until_the_reset():
    clock = Clock(0)
    budget = _told(clock, remaining=0, reset=12.5)
    assert budget.wait_time() == pytest.approx(12.5)


def test_a_budget_the_platform_describes_frees_a_place_a_window_after_the_send_not_the_answer():
    clock = Clock(0)
    budget = _told(clock, policies=((2, 60.0),), remaining=2, reset=60.0)
    budget.acquire()
    budget.acquire()
    clock.now = 2  # both answered two seconds later
    budget.release()
    budget.release()
    assert budget.wait_time() == pytest.approx(60 + 0.6 - 2)  # the send + the window + 1 % margin
    blind = RollingWindowBudget(limit=2, window=60, clock=Clock(0))
    blind.acquire()
    blind.acquire()
    blind.clock.now = 2
    blind.release()
    blind.release()
    assert blind.wait_time() == pytest.approx(60)  # a window after the answer: one latency later


def test_sends_are_spaced_by_an_answers_latency_only_when_the_platform_tells():
    for told in (True, False):
        clock = Clock(0)
        budget = RollingWindowBudget(limit=10, window=60, clock=clock)
        if told:
            budget.observe(Signals(remaining=10, reset=60.0))
        for _ in range(3):
            budget.acquire()
            clock.now += 2
            budget.release(latency=2)
        budget.acquire()  # sent at 6
        assert budget.wait_time() == pytest.approx(2.5 if told else 0)  # 1.25 x the typical latency


def test_no_more_than_the_platform_says_remain_before_a_newer_answer_or_the_reset():
    clock = Clock(0)
    budget = RollingWindowBudget(limit=10, window=60, clock=clock)
    budget.acquire()  # the request being answered: the platform counts other clients of the account too
    budget.observe(Signals(policies=((10, 60.0),), remaining=2, reset=30.0))
    budget.release(latency=0.1)
    for _ in range(2):
        clock.now += 1
        assert budget.wait_time() == 0
        budget.acquire()
    clock.now += 1
    assert budget.wait_time() == math.inf  # two in flight: their answers will say what is left
    budget.release(latency=0.1)
    budget.release(latency=0.1)
    assert budget.wait_time() == pytest.approx(27)  # nothing in flight: until the reset, at 30


def test_a_429_despite_the_platforms_word_widens_the_margin_not_the_limit():
    clock = Clock(0)
    budget = _told(clock, policies=((10, 60.0),), remaining=5, reset=30.0)
    assert not budget.rate_limited(pause=1) and budget.limit == 10 and budget.margin == pytest.approx(1.2)


def test_a_client_moving_to_another_budget_takes_its_own_places_and_leaves_the_others():
    clock = Clock(0)
    old = RollingWindowBudget(limit=3, window=60, clock=clock)
    new = RollingWindowBudget(limit=3, window=60, clock=clock)
    old.acquire("a")
    old.acquire("b")
    old.acquire("b")
    new.acquire("c")
    new.give(old.take("b"))
    assert old.in_flight == 1 and old.flying == {"a": 1} and old.wait_time() == 0
    assert new.in_flight == 3 and new.wait_time() == math.inf
    new.release(latency=1, client="b")
    new.release(latency=1, client="b")
    assert new.flying == {"c": 1, "b": 0} and new.in_flight == 1


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


def test_records_past_the_announced_total_are_kept_and_counted():
    listing = Listing(page_size=250)
    listing.announce(100)
    verdicts = [listing.admit(f"id:c{n}") for n in range(1, 251)]
    assert verdicts.count("new") == 250 and listing.beyond == 150


@pytest.mark.parametrize("total", [0, 7, 40])
def test_a_total_below_what_is_served_drops_nothing_sent_and_asks_no_page_past_it(total):
    listing = Listing(page_size=100)
    assert _page(listing, 1, [f"c{n}" for n in range(1, 101)], limit=100, total=total) is None
    assert listing.seen == 100 and listing.beyond == 100 - total


def test_a_page_cap_that_ignores_the_limit_asked_for():
    # 50 per page whatever `limit` asks, and the page echoes the limit asked for.
    listing = Listing(page_size=100)
    assert _page(listing, 1, [f"c{n}" for n in range(1, 51)], limit=100, total=100) == 2
    assert listing.applied == 50
    assert _page(listing, 2, [f"c{n}" for n in range(51, 101)], limit=100, total=100) is None
    assert listing.seen == 100 and listing.missing == 0


def test_an_echoed_limit_smaller_than_asked_is_the_page_size():
    listing = Listing(page_size=100)
    assert _page(listing, 1, [f"c{n}" for n in range(1, 21)], limit=20, has_more=None, total=None) == 2
    assert listing.applied == 20


@pytest.mark.parametrize("total", [None, 10**9])
def test_a_listing_without_end_stops_at_the_bound_and_says_so(total):
    listing = Listing(page_size=100, max_campaigns=1000)
    page, pages = 1, 0
    while page is not None and pages < 100:  # always-new ids, has_more forever
        pages += 1
        page = _page(listing, page, [f"c{page}-{n}" for n in range(100)], limit=100, total=total)
    assert listing.seen == 1000 and pages == 10
    assert listing.truncated and "ADCRAWLER_MAX_CAMPAIGNS" in listing.stop_reason


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


@pytest.mark.parametrize("received, has_more, total, expected", [
    (4, True, None, None), (4, None, None, None),  # a short page ends a listing without a credible total...
    (4, True, 100, 3),  # ...not one whose total and has_more say there is more (bounded by the page budget)
    (10, False, 100, None), (0, True, 100, None), (10, True, 100, 3), (10, None, 100, 3), (10, None, None, 3)])
def test_short_pages_and_has_more(received, has_more, total, expected):
    listing = Listing(page_size=10)
    _page(listing, 1, [f"a{n}" for n in range(10)], total=total)
    assert _page(listing, 2, [f"b{n}" for n in range(received)], has_more=has_more, total=total) == expected


def test_duplicates_across_pages_count_once():
    listing = Listing(page_size=10)
    _page(listing, 1, [f"c{n}" for n in range(1, 11)])
    assert _page(listing, 2, [f"c{n}" for n in range(10, 20)]) == 3  # c10 again: 9 new, go on
    assert listing.seen == 19


# -- the verdict on an answer -------------------------------------------------

def _decide(endpoint, status, body=b"{}", header=None):
    said = read_signals(lambda name: header.encode() if header and name == "Retry-After" else None, NOW)
    return judge(endpoint, status, said, body)


def test_every_answer_has_one_verdict():
    assert _decide("list", 200).verdict is Verdict.OK  # its body is its reader's to judge
    assert _decide("sync", 503).reason == "http_503" and _decide("sync", 503).verdict is Verdict.RETRY
    assert _decide("sync", 401).verdict is Verdict.REAUTH
    assert _decide("auth", 401).verdict is Verdict.REFUSED and _decide("auth", 403).verdict is Verdict.REFUSED
    assert _decide("auth", 503).verdict is Verdict.RETRY and _decide("auth", 429).verdict is Verdict.RATE_LIMITED
    assert _decide("sync", 404).verdict is Verdict.FATAL and _decide("sync", 403).verdict is Verdict.FATAL


def test_a_403_or_400_that_says_it_is_a_rate_limit_is_one():
    github = b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'
    assert _decide("list", 403, github).verdict is Verdict.RATE_LIMITED
    assert _decide("sync", 400, b"{}", header="30").verdict is Verdict.RATE_LIMITED
    assert _decide("sync", 400, b"{}", header="30").wait == 30
    assert _decide("sync", 403, b'{"message": "Forbidden"}').verdict is Verdict.FATAL  # says nothing of limits
    assert _decide("auth", 403, github).verdict is Verdict.REFUSED  # the token endpoint's 403 is the credentials


def test_retry_after_is_honoured_on_503_as_on_429():
    assert _decide("sync", 503, header="7").wait == 7
    assert _decide("sync", 429, b'{"retry_after": 60}').wait == 60  # body only: the inherited platform
    assert _decide("sync", 429, b'{"retry_after": 60}', header="5").wait == 5  # the header wins
    assert _decide("sync", 503).wait is None  # nothing said: the caller backs off


def test_exceptions_are_transient_or_not():
    from scrapy.exceptions import DownloadTimeoutError, IgnoreRequest
    from twisted.internet.error import ConnectionLost

    assert judge_exception(DownloadTimeoutError()).verdict is Verdict.RETRY
    assert judge_exception(ConnectionLost()).verdict is Verdict.RETRY
    assert judge_exception(IgnoreRequest()).verdict is Verdict.FATAL
    assert json_body(b"\xff\xfe") is NOT_JSON and json_body(b"[1]") == [1]


# -- outcomes --------------------------------------------------------------------

def _outcome(stopped_early=False, seen=0, expected=None, stored=0, failed=0, not_attempted=0, pages=1, **state):
    """A client's run in the ledger with these counts, and its outcome."""
    listing = Listing(100, total=expected, pages=pages, keys={f"id:campaign_{n}": "" for n in range(seen)})
    state.setdefault("state", State.HELD)
    run = ClientRun(Client("acme", "acme-corp"), listing, stored={f"campaign_{n}" for n in range(stored)},
                    failed={f"failed_{n}": FailedSync(None, T0, "HTTP 503", False) for n in range(failed)},
                    syncable={f"listed_{n}" for n in range(not_attempted)}, **state)
    return client_outcome(run, stopped_early)


def test_an_outcome_names_its_reasons():
    full = dict(seen=100, expected=100, stored=100)
    assert _outcome(**full) == Outcome(Result.SUCCEEDED)
    partial = _outcome(**{**full, "seen": 97, "stored": 95, "quarantined": 2, "failed": 1})
    assert partial == Outcome(Result.PARTIAL,
                              ("2 quarantined", "1 sync failed", "3 of 100 announced campaigns never listed"))
    assert _outcome(auth_failure="credentials refused").describe() == "failed (credentials refused)"
    assert _outcome(list_failed=1).describe() == "failed (the campaign list could not be read)"
    assert _outcome(state=State.SKIPPED).name == "skipped"
    assert _outcome(True, **{**full, "stored": 60, "not_attempted": 40}).reasons == (
        "40 not synced before the crawl stopped",)
    assert _outcome(**full, faults=["the run record could not be written"]).describe() == (
        "partial (the run record could not be written)")
    assert _outcome(**{**full, "stored": 99}).reasons == ("1 not stored",)


def test_the_final_line_says_what_to_do_about_each_client():
    ok, line = final_line({"a": Outcome(Result.SUCCEEDED), "b": Outcome(Result.SKIPPED)}, "finished")
    assert ok and line == "Sync complete: 1 client(s) succeeded; skipped (another run holds them): b"
    ok, line = final_line({"acme": Outcome(Result.PARTIAL, ("2 quarantined", "1 sync failed")),
                           "globex": Outcome(Result.FAILED, ("credentials refused",))}, "finished")
    assert not ok and line == ("Sync incomplete: acme: partial (2 quarantined, 1 sync failed); "
                               "globex: failed (credentials refused)")
    assert not final_line({"a": Outcome(Result.SUCCEEDED)}, "shutdown")[0]


def test_eta_is_never_zero_while_work_remains():
    assert eta_seconds(0, 100, 150, 10, 60) == 0
    assert eta_seconds(1, 99, 150, 10, 60) == 6  # one request's share of a window
    assert eta_seconds(95, 5, 5, 10, 60) == 9 * 60 + 6


# -- the retry policy ------------------------------------------------------------

def test_each_kind_of_retry_has_its_own_limit_and_wait():
    policy = RetryPolicy(backoff=(1.0, 8.0), wait_cap=300)
    transient, told = Decision(Verdict.RETRY, "http_503"), Decision(Verdict.RETRY, "http_503", wait=7)
    assert 0.5 <= policy.delay("sync", transient, 1) <= 1 and 1 <= policy.delay("sync", transient, 2) <= 2
    assert 4 <= policy.delay("sync", transient, 6) <= 8  # capped
    assert policy.delay("sync", transient, 7) is None  # out of retries
    assert policy.delay("sync", transient, 7, limit=9) is not None  # a request's own max_retry_times
    assert policy.delay("list", told, 1) == 7  # the platform's word wins over the backoff
    assert policy.delay("list", Decision(Verdict.RETRY, "http_503", wait=9000), 1) == 300  # within the cap
    limited = Decision(Verdict.RATE_LIMITED, "http_429", wait=60)
    assert policy.delay("sync", limited, 5) == 60 and policy.delay("sync", limited, 6) is None
    assert policy.delay("sync", Decision(Verdict.REAUTH, "http_401"), 2) == 0  # a new token is all it needs
    assert policy.delay("sync", Decision(Verdict.REAUTH, "http_401"), 3) is None
    assert policy.delay("sync", Decision(Verdict.FATAL, "http_404"), 1) is None
    # The token request: 5xx and 429 retried, a refusal never.
    assert policy.delay("auth", limited, 1) == 60
    assert policy.delay("auth", Decision(Verdict.REFUSED, "http_401"), 1) is None
    # The database: transient faults only, five times.
    assert policy.delay("database", Decision(Verdict.RETRY, "OperationalError"), 5) is not None
    assert policy.delay("database", Decision(Verdict.RETRY, "OperationalError"), 6) is None


def test_another_pass_is_worth_it_only_for_a_verdict_that_was_worth_a_retry():
    policy = RetryPolicy()
    assert policy.worth_another_pass("sync", Decision(Verdict.RETRY, "DownloadTimeoutError"))
    assert policy.worth_another_pass("sync", Decision(Verdict.RATE_LIMITED, "http_429"))
    assert not policy.worth_another_pass("sync", Decision(Verdict.FATAL, "http_404"))
    assert not policy.worth_another_pass("sync", None)


def test_an_outage_begins_when_five_requests_fail_in_a_row_and_is_probed_once_per_backoff():
    from adcrawler.retry import Outage

    outage = Outage(limit=100, backoff=(1, 8))
    for t in range(6):
        outage.failed(t, f"/sync/{t % 3}")
    assert not outage.on and outage.wait(6) == 0  # three requests failing again and again: unlucky, not down
    outage.answered()
    for t in range(5):
        outage.failed(t, f"/sync/{t}")
    assert outage.on and 0 < outage.wait(4) <= 1  # five different ones: the first probe after one backoff
    assert outage.wait(5) == 0 and outage.sent() and outage.wait(5) == math.inf  # one probe at a time
    outage.failed(6, "/sync/9")  # a request sent before the outage fails meanwhile: the probe is still out
    assert outage.wait(6) == math.inf
    t = 7.0
    for cap in (2, 4, 8, 8):  # each failed probe doubles the backoff, up to its cap
        outage.failed(t, "/sync/0", probe=True)
        assert cap / 2 <= outage.wait(t) <= cap
        t = outage.probe_at
        assert outage.sent()
    assert not outage.over(99) and outage.over(100)  # the limit counts from the first failure
    assert outage.answered() and not outage.on and outage.wait(100) == 0 and not outage.answered()


def test_a_pass_that_recovers_nothing_is_the_last():
    ledger, _ = _ledger()
    ledger.hold("acme-corp")
    run = ledger.run("acme-corp")
    ledger.page_read("acme-corp", 3)
    for n in (1, 2, 3):
        ledger.listed("acme-corp", f"id:campaign_{n}", "digest")
        ledger.to_sync("acme-corp", f"campaign_{n}")
    ledger.page_done("acme-corp", 1, 3, 3, 0, 100, False)

    def fail(campaign_id: str) -> None:
        ledger.sync_sent("acme-corp")
        ledger.sync_failed("acme-corp", campaign_id, FailedSync(None, T0, "HTTP 503", True))

    for n in (1, 2, 3):
        fail(f"campaign_{n}")
    assert set(ledger.next_pass("acme-corp")) == {"campaign_1", "campaign_2", "campaign_3"}  # pass 2
    ledger.sync_sent("acme-corp")
    ledger.synced("acme-corp", "campaign_1", None)  # pass 2 recovers one: pass 3 is worth it
    fail("campaign_2")
    fail("campaign_3")
    assert set(ledger.next_pass("acme-corp")) == {"campaign_2", "campaign_3"} and run.passes == 3

    ledger, _ = _ledger()  # the same, but pass 2 recovers nothing: no pass 3
    ledger.hold("acme-corp")
    ledger.page_read("acme-corp", 2)
    for n in (1, 2):
        ledger.listed("acme-corp", f"id:campaign_{n}", "digest")
        ledger.to_sync("acme-corp", f"campaign_{n}")
    ledger.page_done("acme-corp", 1, 2, 2, 0, 100, False)
    for n in (1, 2):
        fail(f"campaign_{n}")
    assert len(ledger.next_pass("acme-corp")) == 2
    for n in (1, 2):
        fail(f"campaign_{n}")
    assert ledger.next_pass("acme-corp") == {} and ledger.run("acme-corp").passes == 2


# -- the run ledger and the stats it writes --------------------------------------------

def _ledger():
    from scrapy.statscollectors import MemoryStatsCollector
    from scrapy.utils.test import get_crawler

    from adcrawler.ledger import RunLedger
    from adcrawler.stats import RunStats

    stats = MemoryStatsCollector(get_crawler())
    ledger = RunLedger(RunStats(stats), page_size=100, rate_limit=10, rate_window=60, clock=lambda: T0)
    ledger.open([Client("acme", "acme-corp"), Client("globex", "globex")])
    return ledger, stats


def test_the_ledger_knows_which_clients_the_run_holds_and_settles_their_outcomes():
    ledger, stats = _ledger()
    ledger.hold("acme-corp")
    ledger.skip("globex")
    assert ledger.held() == ["acme-corp"]
    ledger.page_read("acme-corp", 1)
    assert ledger.listed("acme-corp", "id:campaign_1", "digest") == "new"
    assert ledger.page_done("acme-corp", 1, 1, 1, 0, 100, False) is None
    ledger.spider_closed(None, "finished")
    assert ledger.outcomes()["acme-corp"] == Outcome(Result.PARTIAL, ("1 not stored",))
    assert ledger.outcomes()["globex"].name == "skipped"
    assert stats.get_value("adcrawler/client/globex/locked") == 1
    # A run record that cannot be written is the run's fault: the outcome and last line say so.
    ledger.fault("acme-corp", "the run record could not be written")
    complete, line = ledger.final_line()
    assert not complete and "the run record could not be written" in line
    assert stats.get_value("adcrawler/client/acme-corp/outcome_reasons") == (
        "1 not stored, the run record could not be written")


def test_a_stat_name_that_is_not_declared_cannot_be_written():
    from adcrawler.stats import RunStats, UndeclaredStat

    ledger, stats = _ledger()
    run_stats = RunStats(stats)
    with pytest.raises(UndeclaredStat, match="campaigns_synched"):
        run_stats.inc("campaigns_synched", "acme-corp")
    with pytest.raises(UndeclaredStat):
        run_stats.set("outcom", "succeeded")
    run_stats.inc("retries", "acme-corp", reason="http_503")  # a declared counter, split by reason
    assert stats.get_value("adcrawler/client/acme-corp/retries/http_503") == 1


# -- rate-limit signals ---------------------------------------------------------

NOW = 1_700_000_000.0
SIGNALS = [
    # (headers, policies, remaining, reset, partition, retry_after, malformed)
    ({"RateLimit-Policy": '"permin";q=50;w=60, "perhr";q=1000;w=3600',
      "RateLimit": '"permin";r=0;t=30, "perhr";r=500;t=3000'},
     ((50, 60.0), (83, 300.0)), 0, 30.0, None, None, ()),  # 1000 an hour: the same rate over 300 s
    ({"RateLimit-Policy": '"default";q=10;w=60;pk=:YWNtZQ==:', "RateLimit": '"default";r=3;t=12'},
     ((10, 60.0),), 3, 12.0, "YWNtZQ==", None, ()),
    ({"RateLimit": '"default";r=7'}, (), 7, None, None, None, ()),  # a policy need not come on every answer
    ({"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}, ((100, None),), 0, 30.0,
     None, None, ()),
    ({"RateLimit-Limit": "100, 100;w=60", "RateLimit-Remaining": "99"}, ((100, None),), 99, None, None, None, ()),
    ({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "45"}, ((5000, None),), 0,
     45.0, None, None, ()),
    ({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)},
     ((5000, None),), 0, 30.0, None, None, ()),  # GitHub, X: epoch seconds
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW * 1000) + 1500)}, (), 0, 1.5, None, None,
     ()),  # epoch milliseconds
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)}, (), 0, 0.0, None, None, ()),  # past
    ({"Retry-After": "7"}, (), None, None, None, 7.0, ()),
    ({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, (), None, None, None, 20.0, ()),  # an HTTP date
    ({"Retry-After": "soon", "X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-1"}, (), None, None, None,
     None, ("X-RateLimit-Limit", "X-RateLimit-Remaining", "Retry-After")),
    ({"RateLimit-Policy": "garbage;;;", "RateLimit": '"d";t=5'}, (), None, None, None, None,
     ("RateLimit-Policy", "RateLimit")),
    ({"RateLimit-Policy": '"d";w=60'}, (), None, None, None, None, ("RateLimit-Policy",)),  # q is required
    ({"RateLimit-Policy": '"d";q=10;w=60', "RateLimit": '"d";r=0;t=99999'}, ((10, 60.0),), 0, 300.0, None, None,
     ()),  # waits are capped
    ({}, (), None, None, None, None, ()),
    # Decimals read like integers (http-sfv gives Decimal for 0.6 and 2.999).
    ({"RateLimit-Policy": '"d";q=10;w=0.6', "RateLimit": '"d";r=4;t=2.999'}, ((10, 0.6),), 4, 2.999, None, None,
     ()),
    # A stated window is bounded like any stated wait.
    ({"RateLimit-Policy": '"p";q=10;w=1000000000'}, ((1, 300.0),), None, None, None, None, ()),
    # Implausible policies: a window shorter than the least useful interval, a quota of 0.
    ({"RateLimit-Policy": '"d";q=1;w=0.001'}, (), None, None, None, None, ("RateLimit-Policy",)),
    ({"RateLimit-Policy": '"d";q=0;w=60'}, (), None, None, None, None, ("RateLimit-Policy",)),
]


@pytest.mark.parametrize("headers, policies, remaining, reset, partition, retry_after, malformed", SIGNALS)
def test_rate_limit_signals_are_read_tolerantly(headers, policies, remaining, reset, partition, retry_after,
                                                malformed):
    lowered = {k.lower(): v.encode() for k, v in headers.items()}
    said = read_signals(lambda name: lowered.get(name.lower()), NOW, cap=300, least=0.5)
    assert (said.policies, said.remaining, said.reset, said.partition, said.retry_after) == (
        policies, remaining, reset, partition, retry_after)
    assert sorted(said.malformed) == sorted(malformed)


@pytest.mark.parametrize("value, expected", [(30, 30), (999_999_999, 999_999_999), (NOW + 10, 10),
                                             (NOW * 1000 + 2500, 2.5)])
def test_a_reset_is_told_apart_by_magnitude(value, expected):
    assert reset_delta(value, NOW) == pytest.approx(expected)
