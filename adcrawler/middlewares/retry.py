"""Acting on the verdict on each API answer: retry, pause for a 429, re-authenticate.

Replaces Scrapy's RetryMiddleware. Every answer and download exception of an
API call is judged once by :mod:`adcrawler.answers`; whether and when to try
again is the retry policy's word (:mod:`adcrawler.retrying`). This middleware
never waits itself: a request to send again goes back to the scheduler with
the wait in its meta (``adcrawler_not_before`` for a backoff,
``adcrawler_pause`` for a 429, which pauses the whole client), so no place in
``CONCURRENT_REQUESTS`` is held while waiting. A token refused (401) is
dropped first, so the token middleware fetches a new one when the request is
sent again. Out of retries, or on a verdict not worth one, the answer or
exception goes on to the spider with the verdict in ``adcrawler_verdict``.

Sits below HttpCompressionMiddleware (590), so it judges decompressed bodies.
Token requests are not handled here: the token middleware asks the same
policy for them.

Settings: ADCRAWLER_RETRY_HTTP_CODES, ADCRAWLER_RETRY_AFTER_MAX, and the retry
settings read by :class:`~adcrawler.retrying.RetryPolicy`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from scrapy import Request
from scrapy.http import Response

from adcrawler.answers import Decision, Verdict, decide_exception, decide_response
from adcrawler.config import value
from adcrawler.meta import CLIENT, ENDPOINT, PAUSE
from adcrawler.retrying import RetryPolicy, retry_request
from adcrawler.stats import RunStats

from .auth import BearerTokenMiddleware

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class RetryMiddleware:
    def __init__(self, crawler: Crawler, policy: RetryPolicy, retry_codes: frozenset[int], retry_after_cap: float):
        self.crawler = crawler
        self.policy = policy
        self.retry_codes = retry_codes
        self.retry_after_cap = retry_after_cap
        self.stats = RunStats(crawler)
        self._tokens: BearerTokenMiddleware | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "RetryMiddleware":
        s = crawler.settings
        return cls(crawler, RetryPolicy.from_settings(s), frozenset(value(s, "ADCRAWLER_RETRY_HTTP_CODES")),
                   value(s, "ADCRAWLER_RETRY_AFTER_MAX"))

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
        if decision.verdict is Verdict.OK:
            return None
        client = request.meta[CLIENT]
        if decision.verdict is Verdict.RATE_LIMITED:
            self.stats.inc("responses_429", client)
        elif decision.verdict is Verdict.REAUTH:
            self.stats.inc("token_rejected", client)
            self.tokens.invalidate(request)
        again = retry_request(request, decision, self.policy, self.stats, self.crawler.spider)
        if again is not None and PAUSE in again.meta:
            logger.warning("Client %s: 429 on %s, pausing the client for %.2fs", client, request.url,
                           again.meta[PAUSE], extra={"client": client})
        elif again is not None and decision.verdict is Verdict.REAUTH:
            logger.info("Client %s: token refused on %s; sending again with a new one", client, request.url,
                        extra={"client": client})
        return again

    @property
    def tokens(self) -> BearerTokenMiddleware:
        """The token middleware (looked up on first use: it exists once the engine does)."""
        if self._tokens is None:
            self._tokens = self.crawler.get_downloader_middleware(BearerTokenMiddleware)
            assert self._tokens is not None, "BearerTokenMiddleware must be enabled"
        return self._tokens
