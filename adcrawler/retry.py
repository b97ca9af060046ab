"""When to try again: the verdict on every answer, its wait (the platform's Retry-After, else a capped
backoff with jitter) and the decision, for API calls (through Scrapy's ``get_retry_request``, from the
middleware or a callback), the token request and batch writes (:func:`keep_trying`) alike."""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Response
from scrapy.utils.asyncio import sleep
from twisted.internet import error as net

from adcrawler.budget import Signals, parse_retry_after
from adcrawler.config import scaled
from adcrawler.listing import NOT_JSON
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Request.meta keys a caller may set or read (the reference's meta table is generated from these).
CLIENT = "adcrawler_client"
ENDPOINT = "adcrawler_endpoint"
TOKEN_FOR = "adcrawler_token_for"
NOT_BEFORE = "adcrawler_not_before"
PAUSE = "adcrawler_pause"
ATTEMPTS = "adcrawler_attempts"
VERDICT = "adcrawler_verdict"
PUBLIC = {
    CLIENT: "the platform client id of an API call: selects its rate budget and its bearer token",
    ENDPOINT: "`auth`, `list` or `sync`: how answers are judged and counted",
    TOKEN_FOR: "on a token request, the client it is for (token requests are not budgeted)",
    NOT_BEFORE: "seconds from now before the scheduler may send the request (a retry's backoff)",
    PAUSE: "seconds the whole client pauses before this request goes again (the platform answered 429)",
    ATTEMPTS: "retries made so far, per kind (`transient`, `rate_limited`, `reauth`)",
    VERDICT: "the last verdict on the request's answer (`adcrawler.retry.Decision`), set when it is not retried",
}
SIGNALS = "_adcrawler_signals"  # what the answer's headers said of the limits (set by the scheduler)
PROBE = "_adcrawler_probe"  # sent while the client's platform was failing everything (set by the scheduler)
GIVEN_UP = "_adcrawler_given_up"  # why the client was given up: the request goes to its errback, unsent

def json_body(body: bytes) -> Any:
    """The JSON value of a sync, token or 429 answer, or :data:`NOT_JSON` (list pages: ``read_page``)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return NOT_JSON


class Verdict(Enum):
    OK = "ok"
    RETRY = "retry"  # transient: a 5xx, a timeout, a dropped connection, a 200 that is not JSON
    RATE_LIMITED = "rate_limited"  # 429: the whole client pauses
    REAUTH = "reauth"  # 401 on an API call: the token was refused; get a new one
    REFUSED = "refused"  # 401 or 403 from the token endpoint: the credentials are wrong
    FATAL = "fatal"  # anything else (404, 400...): recorded, not retried


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # stat-key safe: http_503, invalid_json, DownloadTimeoutError...
    wait: float | None = None  # seconds the platform asked for, if it said
    detail: str = ""  # for the log line: the error's message


RATE_LIMIT_WORDS = re.compile(rb"rate[ _-]?limit|too many requests", re.I)
# Statuses worth another try (Scrapy's RETRY_HTTP_CODES, and two of CDNs' timeouts).
RETRY_CODES = frozenset({500, 502, 503, 504, 408, 522, 524})
# The connection or the transfer failed: nothing usable reached us (Scrapy's RETRY_EXCEPTIONS;
# OSError covers an empty compressed body).
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    CannotResolveHostError, DownloadConnectionRefusedError, DownloadFailedError, DownloadTimeoutError,
    ResponseDataLossError, net.ConnectionDone, net.ConnectError, net.ConnectionLost, OSError,
)


def judge(endpoint: str, status: int, said: Signals | None, body: bytes) -> Decision:
    """The verdict on an answer's status (a 2xx body is its reader's to judge). ``said``: what its
    headers said (Retry-After included); a 429's body is read for a wait only when they did not."""
    wait = said.retry_after if said else None
    if 200 <= status < 300:
        return Decision(Verdict.OK, "ok")
    if status == 429:
        if wait is None:
            parsed = json_body(body)
            wait = parse_retry_after(None, None if parsed is NOT_JSON else parsed, time.time(), RETRY_AFTER_MAX)
        return Decision(Verdict.RATE_LIMITED, "http_429", wait)
    if status in (401, 403) and endpoint == "auth":
        return Decision(Verdict.REFUSED, f"http_{status}")
    if status in (400, 403) and (wait is not None or RATE_LIMIT_WORDS.search(body[:2048])):
        # A secondary limit, as GitHub answers it: a 403 (or 400) with Retry-After or saying so.
        return Decision(Verdict.RATE_LIMITED, f"http_{status}_rate_limited", wait)
    if status == 401:
        return Decision(Verdict.REAUTH, "http_401")
    if status in RETRY_CODES:
        return Decision(Verdict.RETRY, f"http_{status}", wait)
    return Decision(Verdict.FATAL, f"http_{status}")


def judge_exception(exception: BaseException) -> Decision:
    """The verdict on a request that got no answer."""
    transient = isinstance(exception, TRANSIENT_EXCEPTIONS)
    return Decision(Verdict.RETRY if transient else Verdict.FATAL, type(exception).__name__)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Uniform in [c/2, c], c = min(cap, base * 2**(attempt-1)): jitter spreads the retries of
    requests that failed together, so they do not come back as one burst."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


# Retries allowed, per kind. Six transient retries outlast a minute of faults at the real
# clock; a seventh 429 would mean the budget is wrong, not unlucky; a token refused twice
# running is not an early expiry.
LIMITS = {"transient": 6, "rate_limited": 5, "reauth": 2, "token": 6, "database": 5}
BACKOFF = (1.0, 30.0)  # base and cap of the backoff, real seconds (scaled)
RETRY_AFTER_MAX = 300.0  # the longest wait a platform is believed for, real seconds (scaled)
_API_KINDS = {Verdict.RETRY: "transient", Verdict.RATE_LIMITED: "rate_limited", Verdict.REAUTH: "reauth"}
_STAT = {"auth": "token_retries", "database": "db_retries"}  # API calls: "retries"


class ClientGivenUp(IgnoreRequest):
    """The request's client was given up (its platform unavailable): not sent, its errback told."""


class GaveUp(Exception):
    """``keep_trying`` ran out of tries; ``decision`` is the last verdict, ``elapsed`` the seconds
    since the first failure."""

    def __init__(self, decision: Decision, attempts: int, elapsed: float = 0.0):
        super().__init__(decision.reason)
        self.decision, self.attempts, self.elapsed = decision, attempts, elapsed


@dataclass(frozen=True)
class RetryPolicy:
    backoff: tuple[float, float] = BACKOFF
    wait_cap: float = RETRY_AFTER_MAX

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls((scaled(settings, BACKOFF[0]), scaled(settings, BACKOFF[1])), scaled(settings, RETRY_AFTER_MAX))

    @staticmethod
    def kind(what: str, decision: Decision) -> str | None:
        """The retry budget an attempt at ``what`` (``list``, ``sync``, ``auth`` or ``database``)
        draws from, or None when its verdict is not worth another try."""
        if what == "database":
            return "database" if decision.verdict is Verdict.RETRY else None
        if what == "auth":
            return "token" if decision.verdict in (Verdict.RETRY, Verdict.RATE_LIMITED) else None
        return _API_KINDS.get(decision.verdict)

    def delay(self, what: str, decision: Decision, attempt: int, limit: int | None = None) -> float | None:
        """Seconds before retry number ``attempt`` of ``what``, or None: give up. ``limit``
        overrides the kind's (a request's own ``max_retry_times``)."""
        kind = self.kind(what, decision)
        if kind is None or attempt > (LIMITS[kind] if limit is None else limit):
            return None
        if kind == "reauth":
            return 0.0  # a new token is all it needs
        if decision.wait is not None:
            return min(decision.wait, self.wait_cap)
        return backoff_delay(attempt, *self.backoff)

    def worth_another_pass(self, what: str, decision: Decision | None) -> bool:
        """A request given up on: is another pass over it, later in the run, worth it?"""
        return decision is not None and self.kind(what, decision) is not None


OUTAGE_AFTER = 5  # different requests failing in a row, with no answer between them, that make an outage
OUTAGE_LIMIT = 600.0  # ADCRAWLER_OUTAGE_LIMIT's default, real seconds (scaled)


@dataclass
class Outage:
    """A client's platform failing everything: once five different requests in a row got no
    answer (a few requests failing again and again are unlucky, not an outage), one request at a
    time is sent, a probe per backoff, until an answer comes or ``limit`` seconds have passed since
    the first failure. Pure: times are passed in."""

    limit: float = OUTAGE_LIMIT
    backoff: tuple[float, float] = BACKOFF
    failing: set[str] = field(default_factory=set)  # the requests (URLs) that failed in a row
    since: float | None = None  # the first of those failures
    probes: int = 0  # failed probes: the backoff grows with them
    probe_at: float = 0.0
    probing: bool = False

    @property
    def on(self) -> bool:
        return len(self.failing) >= OUTAGE_AFTER

    def failed(self, now: float, request: str, probe: bool = False) -> None:
        self.failing.add(request)
        self.since = now if self.since is None else self.since
        if probe:
            self.probing, self.probes = False, self.probes + 1
        if self.on and not self.probing:
            self.probe_at = max(self.probe_at, now + backoff_delay(self.probes + 1, *self.backoff))

    def answered(self) -> bool:
        """The platform answered: the outage, if there was one, is over (True)."""
        was = self.on
        self.failing, self.since, self.probes, self.probing = set(), None, 0, False
        return was

    def wait(self, now: float) -> float:
        """Seconds before the client may send again: 0 but in an outage (inf while a probe is out)."""
        if not self.on:
            return 0.0
        return math.inf if self.probing else max(0.0, self.probe_at - now)

    def sent(self) -> bool:
        """A request goes out: True when it is a probe."""
        self.probing = self.on
        return self.on

    def over(self, now: float) -> bool:
        return self.on and now - self.since >= self.limit  # on: since is set


def retry_request(request: Request, decision: Decision, policy: RetryPolicy, stats: RunStats,
                  spider: Any, outage: bool = False) -> Request | None:
    """The copy of an API ``request`` to send again after ``decision``, with its wait in meta for
    the scheduler; or None, with the verdict left in ``meta[VERDICT]`` for whoever handles the
    failure. A probe sent in an ``outage`` costs none of its tries when it fails again: the
    outage has its own bound, and the scheduler paces the probes."""
    what, client = request.meta.get(ENDPOINT, ""), request.meta.get(CLIENT)
    kind = policy.kind(what, decision)
    attempts = dict(request.meta.get(ATTEMPTS) or {})
    free = outage and kind == "transient"
    attempt = attempts.get(kind, 0) + (not free)
    limit = request.meta.get("max_retry_times") if kind == "transient" else None
    wait = 0.0 if free else policy.delay(what, decision, attempt, limit)
    tried = request.meta.get("retry_times", 0)
    if wait is None:
        request.meta[VERDICT] = decision
        if kind:  # Scrapy's "Gave up retrying" line (a warning when a later pass may try again: a sync)
            get_retry_request(request, spider=spider, reason=decision.reason, max_retry_times=tried,
                              give_up_log_level=logging.WARNING if what == "sync" else logging.ERROR)
        return None
    # Allowed one more whatever RETRY_TIMES says: the policy has decided.
    again = get_retry_request(request, spider=spider, reason=decision.reason, max_retry_times=tried + 1)
    assert again is not None
    attempts[kind] = attempt
    again.meta[ATTEMPTS] = attempts
    again.meta[PAUSE if kind == "rate_limited" else NOT_BEFORE] = wait
    again.meta.pop(SIGNALS, None)
    again.meta.pop(PROBE, None)
    stats.inc(_STAT.get(what, "retries"), client, reason=decision.reason)
    return again


async def keep_trying(what: str, attempt: Callable[[], Awaitable[tuple[Decision, T]]], policy: RetryPolicy,
                      stats: RunStats, client: str | None = None, stopping: Callable[[], bool] = lambda: False,
                      patience: Callable[[], float] = lambda: 0.0) -> T:
    """``attempt()`` until its decision is OK (its result returned) or the policy gives up
    (:class:`GaveUp`): the token request and the batch writes. Retries go on past the policy's
    count until ``patience()`` seconds (asked after each failure) have passed since the first
    failure; never while stopping."""
    first_failure = None
    for n in itertools.count(1):
        decision, result = await attempt()
        if decision.verdict is Verdict.OK:
            return result
        first_failure = first_failure or time.monotonic()
        patient = time.monotonic() - first_failure < patience()
        delay = None if stopping() else policy.delay(what, decision, n, n if patient else None)
        if delay is None:
            raise GaveUp(decision, n, time.monotonic() - first_failure)
        stats.inc(_STAT.get(what, "retries"), client, reason=decision.reason)
        logger.warning("%s%s failed (%s%s); retry %d in %.2fs", f"Client {client}: " if client else "",
                       {"auth": "Token request", "database": "Database write"}.get(what, what), decision.reason,
                       f": {decision.detail}" if decision.detail else "", n, delay,
                       extra={"client": client} if client else None)
        end = time.monotonic() + delay  # the wait ends early once the crawl is being stopped
        while not stopping() and (left := end - time.monotonic()) > 0:
            await sleep(min(left, 0.25))


class RetryMiddleware:
    """Acts on the verdict on each API answer: counts it, retries it or pauses its client for a
    429 (sent again with a new token after a 401); gives up to the callback or errback with the
    verdict. A probe of an outage (:class:`Outage`) is retried at no cost to its tries."""

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.policy = RetryPolicy.from_settings(crawler.settings)
        self.stats = RunStats(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        if GIVEN_UP in request.meta:  # before the token middleware: no token is asked for it
            raise ClientGivenUp(request.meta[GIVEN_UP])

    def process_response(self, request: Request, response: Response) -> Request | Response:
        endpoint = request.meta.get(ENDPOINT)
        if endpoint:  # every answer, retried ones and the token endpoint's included
            client = request.meta.get(CLIENT) or request.meta.get(TOKEN_FOR)
            self.stats.inc("responses", client, reason=f"{endpoint}_{response.status}")
        if not self._handles(request):
            return response
        decision = judge(endpoint or "", response.status, request.meta.get(SIGNALS), response.body)
        return self._act(request, decision) or response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if not self._handles(request):
            return None
        return self._act(request, judge_exception(exception))

    @staticmethod
    def _handles(request: Request) -> bool:
        return request.meta.get(CLIENT) is not None and not request.meta.get("dont_retry")

    def _act(self, request: Request, decision: Decision) -> Request | None:
        if decision.verdict is Verdict.OK:
            return None
        client = request.meta[CLIENT]
        if decision.verdict is Verdict.RATE_LIMITED:
            self.stats.inc("responses_429", client)
        elif decision.verdict is Verdict.REAUTH:  # the token middleware has dropped the token refused
            self.stats.inc("token_rejected", client)
        again = retry_request(request, decision, self.policy, self.stats, self.crawler.spider,
                              outage=request.meta.get(PROBE, False))
        if again is not None and PAUSE in again.meta:
            logger.warning("Client %s: 429 on %s, pausing the client for %.2fs", client, request.url,
                           again.meta[PAUSE], extra={"client": client})
        elif again is not None and decision.verdict is Verdict.REAUTH:
            logger.info("Client %s: token refused on %s; sending again with a new one", client, request.url,
                        extra={"client": client})
        return again
