"""Per-client rate budget, and what to do when a 429 arrives anyway.

Every request carrying ``meta["adcrawler_client"]`` waits here until that
client's rolling window (:mod:`adcrawler.ratelimit`) has room, so a normal run
never causes a 429. Retries pass through again and spend budget too. A 429 that
still arrives (another process using the same client id, a platform with a
smaller limit) pauses only that client for what the platform asked: the
``Retry-After`` header (seconds or HTTP date), else the body's ``retry_after``,
else backoff; then the request is sent again, and the client's limit is
lowered (see :meth:`RollingWindowBudget.rate_limited`).

A place in the budget is held from admission until the request *leaves* the
downloader, so time spent in the download slot's queue (AutoThrottle's delay)
counts against the client: AutoThrottle can slow a client down, never push it
past its budget.

Settings: ADCRAWLER_RATE_LIMIT, ADCRAWLER_RATE_WINDOW, ADCRAWLER_RATE_429_RETRIES,
ADCRAWLER_RETRY_AFTER_MAX, ADCRAWLER_RETRY_BACKOFF_BASE, ADCRAWLER_RETRY_BACKOFF_MAX.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.asyncio import sleep

from adcrawler.backoff import backoff_delay, parse_retry_after
from adcrawler.ratelimit import RollingWindowBudget
from adcrawler.settings_check import positive_float, positive_int
from adcrawler.stats import RunStats

from . import client_of, resend

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

_HELD = "_adcrawler_budget_held"
MAX_NAP = 1.0  # seconds
RETRIES_429 = "adcrawler_429_times"


class ShuttingDown(IgnoreRequest):
    """The crawl is stopping: a request still waiting for budget is not sent."""


class RateBudgetMiddleware:
    def __init__(self, limit: int, window: float, max_429_retries: int, retry_after_cap: float,
                 backoff_base: float, backoff_cap: float, stats: RunStats,
                 clock: Callable[[], float] = time.monotonic, running: Callable[[], bool] = lambda: True):
        self.limit = limit
        self.window = window
        self.max_429_retries = max_429_retries
        self.retry_after_cap = retry_after_cap
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = stats
        self.clock = clock
        self.running = running
        self.budgets: dict[str, RollingWindowBudget] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "RateBudgetMiddleware":
        s = crawler.settings
        mw = cls(
            limit=positive_int(s, "ADCRAWLER_RATE_LIMIT"),
            window=positive_float(s, "ADCRAWLER_RATE_WINDOW"),
            max_429_retries=positive_int(s, "ADCRAWLER_RATE_429_RETRIES", allow_zero=True),
            retry_after_cap=positive_float(s, "ADCRAWLER_RETRY_AFTER_MAX"),
            backoff_base=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_BASE"),
            backoff_cap=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_MAX"),
            stats=RunStats(crawler),
            running=lambda: _engine_running(crawler),
        )
        crawler.signals.connect(mw._left_downloader, signal=signals.request_left_downloader)
        return mw

    def budget(self, client: str) -> RollingWindowBudget:
        if client not in self.budgets:
            self.budgets[client] = RollingWindowBudget(self.limit, self.window, self.clock)
        return self.budgets[client]

    async def process_request(self, request: Request) -> None:
        client = client_of(request)
        if client is None:
            return None
        budget = self.budget(client)
        began = self.clock()
        # One waiter at a time per client, in arrival order (asyncio.Lock is fair).
        async with self._locks[client]:
            while (wait := budget.wait_time()) > 0:
                # Short naps, so that a graceful stop (SIGTERM) does not wait
                # for the budget to let every queued request through.
                if not self.running():
                    raise ShuttingDown("not sent: the crawl is stopping")
                await sleep(min(wait, MAX_NAP))
            if not self.running():
                raise ShuttingDown("not sent: the crawl is stopping")
            budget.acquire()
        request.meta[_HELD] = True
        self.stats.inc("requests_sent", client)
        waited = self.clock() - began
        if waited > 0:
            self.stats.inc("rate_wait_seconds", client, round(waited, 3))
        return None

    def _release(self, request: Request) -> None:
        if request.meta.pop(_HELD, False):
            self.budgets[client_of(request)].release()

    def _left_downloader(self, request: Request, spider: object = None) -> None:
        self._release(request)

    def process_exception(self, request: Request, exception: Exception) -> None:
        # A later middleware refused the request before it reached the downloader.
        self._release(request)
        return None

    def process_response(self, request: Request, response: Response) -> Request | Response:
        client = client_of(request)
        if response.status != 429 or client is None:
            return response
        self.stats.inc("responses_429", client)
        attempt = request.meta.get(RETRIES_429, 0) + 1
        wait = parse_retry_after(response.headers.get("Retry-After"), _json_or_none(response),
                                 time.time(), self.retry_after_cap)
        if wait is None:
            wait = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
        budget = self.budget(client)
        if budget.rate_limited(wait):
            self.stats.set("rate_limit_effective", budget.limit, client)
            logger.warning("Client %s: the platform's limit is lower than ADCRAWLER_RATE_LIMIT=%d; "
                           "using %d per %gs for the rest of the run", client, self.limit, budget.limit,
                           self.window, extra={"client": client})
        if attempt > self.max_429_retries:
            logger.error("Client %s: still rate limited after %d retries of %s; giving up",
                         client, self.max_429_retries, request.url, extra={"client": client})
            return response
        logger.warning("Client %s: 429 on %s, pausing the client for %.2fs", client, request.url, wait,
                       extra={"client": client})
        return resend(request, RETRIES_429, attempt)


def _engine_running(crawler: Crawler) -> bool:
    try:
        return crawler.engine.running
    except RuntimeError:  # no engine yet (components built outside a crawl)
        return True


def _json_or_none(response: Response) -> object:
    try:
        return json.loads(response.body)
    except ValueError:
        return None
