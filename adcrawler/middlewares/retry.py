"""Retries for transient failures, with capped exponential backoff and jitter.

Replaces Scrapy's RetryMiddleware (same ``retry/...`` stats, ``dont_retry`` and
``max_retry_times`` meta keys) and adds the wait: the retry is returned only
after ``backoff_delay`` has passed, awaited on the event loop so nothing else
blocks. 429 is not handled here (see ratebudget), 401 neither (see auth); any
other 4xx is a permanent answer and reaches the spider's errback. A 200 whose
body is not JSON, on a request whose ``meta["adcrawler_expect_json"]`` is set,
is a transient fault too (a proxy's error page): retried as ``invalid_json``.

Settings: RETRY_TIMES, RETRY_EXCEPTIONS, ADCRAWLER_RETRY_HTTP_CODES,
ADCRAWLER_RETRY_BACKOFF_BASE, ADCRAWLER_RETRY_BACKOFF_MAX.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from scrapy import Request
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.http import Response
from scrapy.utils.asyncio import sleep
from scrapy.utils.misc import load_object

from adcrawler.backoff import backoff_delay
from adcrawler.settings_check import positive_float, positive_int
from adcrawler.stats import RunStats

from . import EXPECT_JSON, client_of

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class BackoffRetryMiddleware:
    def __init__(self, crawler: Crawler, max_retry_times: int, http_codes: set[int],
                 exceptions: tuple[type[BaseException], ...], base: float, cap: float):
        self.crawler = crawler
        self.max_retry_times = max_retry_times
        self.http_codes = http_codes
        self.exceptions = exceptions
        self.base = base
        self.cap = cap
        self.stats = RunStats(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BackoffRetryMiddleware":
        s = crawler.settings
        return cls(
            crawler,
            max_retry_times=positive_int(s, "RETRY_TIMES", allow_zero=True),
            http_codes={int(c) for c in s.getlist("ADCRAWLER_RETRY_HTTP_CODES")},
            exceptions=tuple(load_object(e) if isinstance(e, str) else e for e in s.getlist("RETRY_EXCEPTIONS")),
            base=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_BASE"),
            cap=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_MAX"),
        )

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry"):
            return response
        if response.status in self.http_codes:
            return await self.retry(request, f"http_{response.status}") or response
        if response.status == 200 and request.meta.get(EXPECT_JSON) and not _is_json(response.body):
            return await self.retry(request, "invalid_json") or response
        return response

    async def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if request.meta.get("dont_retry") or not isinstance(exception, self.exceptions):
            return None
        return await self.retry(request, type(exception).__name__)

    async def retry(self, request: Request, reason: str) -> Request | None:
        """The request to send again after the backoff, or None when out of attempts."""
        new = get_retry_request(request, spider=self.crawler.spider, reason=reason,
                                max_retry_times=request.meta.get("max_retry_times", self.max_retry_times))
        if new is None:
            return None
        self.stats.inc("retries", client_of(request), reason=reason)
        await sleep(backoff_delay(new.meta["retry_times"], self.base, self.cap))
        return new
