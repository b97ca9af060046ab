"""Pure logic, driven with an injected clock: no test here sleeps."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from adcrawler.backoff import backoff_delay, parse_retry_after
from adcrawler.pagination import next_page
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
    assert budget.wait_time() > 0  # all three in flight
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


@pytest.mark.parametrize("requests, expected", [(0, 0), (1, 0), (10, 0), (11, 60), (101, 600), (137, 780)])
def test_lower_bound(requests, expected):
    assert lower_bound_seconds(requests, 10, 60) == expected


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


# -- pagination stop rule ------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    ((1, 10, 10, 10, 100, True), 2),
    ((10, 10, 10, 100, 100, True), None),  # total reached although has_more says yes
    ((3, 10, 4, 24, 100, True), None),  # short page
    ((2, 10, 10, 20, 100, False), None),  # has_more false
    ((1, 100, 100, 100, 100, True), None),  # quirks: unbounded page, has_more page < 10
    ((1, 10, 0, 0, None, True), None),  # empty page
    ((1, 30, 30, 30, None, None), 2),  # no pagination block: keep going while pages are full
    ((2, 10, 10, 19, 100, True), 3),  # a duplicate on the page: 19 distinct, go on
])
def test_next_page(args, expected):
    assert next_page(*args) == expected
