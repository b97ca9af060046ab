"""Acting on the verdict on each answer: retry, pause for a 429, re-authenticate.

Replaces Scrapy's RetryMiddleware. Every answer and download exception of an
API call is judged by :mod:`adcrawler.answers`; this middleware carries out the
verdict and never waits itself: a request to send again goes back to the
scheduler with the wait in its meta (``adcrawler_not_before`` for a backoff,
``adcrawler_pause`` for a 429, which pauses the whole client), so no place in
``CONCURRENT_REQUESTS`` is held while waiting.

- RETRY: up to ``ADCRAWLER_RETRY_TIMES`` times (or ``max_retry_times`` in
  meta), after the platform's Retry-After when it sent one, else the backoff;
  Scrapy's ``retry/...`` stats, and ``adcrawler/retries/<reason>``;
- RATE_LIMITED: up to ``ADCRAWLER_RATE_429_RETRIES`` times;
- REAUTH: the token that was refused is dropped (the token middleware fetches
  a new one when the request is sent again), at most twice per request;
- anything else, or out of attempts: the answer or exception goes on to the
  spider, which records it.

Sits below HttpCompressionMiddleware (590), so it judges decompressed bodies.
Token requests are not handled here: the token middleware retries them itself.

Settings: ADCRAWLER_RETRY_TIMES, ADCRAWLER_RETRY_HTTP_CODES, ADCRAWLER_RETRY_BACKOFF_BASE,
ADCRAWLER_RETRY_BACKOFF_MAX, ADCRAWLER_RATE_429_RETRIES, ADCRAWLER_RETRY_AFTER_MAX.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from scrapy import Request
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.http import Response

from adcrawler.answers import Decision, Verdict, decide_exception, decide_response
from adcrawler.config import value
from adcrawler.scheduler import NOT_BEFORE, PAUSE
from adcrawler.stats import RunStats

from . import CLIENT, ENDPOINT, resend
from .auth import BearerTokenMiddleware

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

RETRIES_429 = "adcrawler_429_times"
REAUTH_TIMES = "adcrawler_reauth_times"
MAX_REAUTH = 2


class RetryMiddleware:
    def __init__(self, crawler: Crawler, retry_times: int, retry_codes: frozenset[int], max_429: int,
                 retry_after_cap: float, backoff_base: float, backoff_cap: float):
        self.crawler = crawler
        self.retry_times = retry_times
        self.retry_codes = retry_codes
        self.max_429 = max_429
        self.retry_after_cap = retry_after_cap
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = RunStats(crawler)
        self._tokens: BearerTokenMiddleware | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "RetryMiddleware":
        s = crawler.settings
        return cls(crawler, value(s, "ADCRAWLER_RETRY_TIMES"), frozenset(value(s, "ADCRAWLER_RETRY_HTTP_CODES")),
                   value(s, "ADCRAWLER_RATE_429_RETRIES"), value(s, "ADCRAWLER_RETRY_AFTER_MAX"),
                   value(s, "ADCRAWLER_RETRY_BACKOFF_BASE"), value(s, "ADCRAWLER_RETRY_BACKOFF_MAX"))

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if not self._handles(request):
            return response
        decision = decide_response(request.meta.get(ENDPOINT, ""), response.status,
                                   response.headers.get("Retry-After"), response.body, self.retry_codes,
                                   time.time(), self.retry_after_cap)
        return self._act(request, decision) or response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if not self._handles(request):
            return None
        return self._act(request, decide_exception(exception))

    def _handles(self, request: Request) -> bool:
        return request.meta.get(CLIENT) is not None and not request.meta.get("dont_retry")

    def _act(self, request: Request, decision: Decision) -> Request | None:
        client = request.meta[CLIENT]
        if decision.verdict is Verdict.RETRY:
            again = get_retry_request(request, spider=self.crawler.spider, reason=decision.reason,
                                      max_retry_times=request.meta.get("max_retry_times", self.retry_times))
            if again is None:
                return None
            self.stats.inc("retries", client, reason=decision.reason)
            again.meta[NOT_BEFORE] = decision.delay(again.meta["retry_times"], self.backoff_base, self.backoff_cap)
            return again
        if decision.verdict is Verdict.RATE_LIMITED:
            self.stats.inc("responses_429", client)
            attempt = request.meta.get(RETRIES_429, 0) + 1
            if attempt > self.max_429:
                logger.error("Client %s: still rate limited after %d retries of %s; giving up",
                             client, self.max_429, request.url, extra={"client": client})
                return None
            wait = decision.delay(attempt, self.backoff_base, self.backoff_cap)
            logger.warning("Client %s: 429 on %s, pausing the client for %.2fs", client, request.url, wait,
                           extra={"client": client})
            return resend(request, RETRIES_429, attempt, **{PAUSE: wait})
        if decision.verdict is Verdict.REAUTH:
            self.stats.inc("token_rejected", client)
            self.tokens.invalidate(request)
            attempt = request.meta.get(REAUTH_TIMES, 0) + 1
            if attempt > MAX_REAUTH:
                return None
            logger.info("Client %s: token refused on %s; sending again with a new one", client, request.url,
                        extra={"client": client})
            return resend(request, REAUTH_TIMES, attempt)
        return None

    @property
    def tokens(self) -> BearerTokenMiddleware:
        """The token middleware (looked up on first use: it exists once the engine does)."""
        if self._tokens is None:
            self._tokens = self.crawler.get_downloader_middleware(BearerTokenMiddleware)
            assert self._tokens is not None, "BearerTokenMiddleware must be enabled"
        return self._tokens
