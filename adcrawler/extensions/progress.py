"""A progress line per client every ``ADCRAWLER_PROGRESS_INTERVAL`` seconds.

Like Scrapy's LogStats, but in the terms an operator cares about::

    Progress demo: 45/100 done (43 synced, 2 failed), 12 retries, 0 429s, ETA 330s

The ETA comes from the rate budget, not from the past rate: the campaigns
left, times the attempts a campaign has needed so far, spread over the
client's budget of ADCRAWLER_RATE_LIMIT requests per ADCRAWLER_RATE_WINDOW.

Settings: ADCRAWLER_PROGRESS_INTERVAL, ADCRAWLER_RATE_LIMIT, ADCRAWLER_RATE_WINDOW.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from adcrawler.settings_check import positive_float, positive_int
from adcrawler.stats import RunStats

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def eta_seconds(remaining: int, done: int, requests_sent: int, limit: int, window: float) -> float:
    """Seconds the budget needs for ``remaining`` campaigns.

    Each campaign is expected to cost as many requests as the finished ones
    did on average (at least one); ``limit`` requests fit in each ``window``.
    """
    if remaining <= 0:
        return 0.0
    per_campaign = max(1.0, requests_sent / done) if done else 1.0
    return math.ceil(remaining * per_campaign / limit) * window


class Progress:
    def __init__(self, crawler: Crawler, interval: float, limit: int, window: float):
        self.crawler = crawler
        self.interval = interval
        self.limit = limit
        self.window = window
        self.stats = RunStats(crawler)
        self.task: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "Progress":
        s = crawler.settings
        interval = positive_float(s, "ADCRAWLER_PROGRESS_INTERVAL", allow_zero=True)
        if interval == 0:
            raise NotConfigured
        ext = cls(crawler, interval, positive_int(s, "ADCRAWLER_RATE_LIMIT"),
                  positive_float(s, "ADCRAWLER_RATE_WINDOW"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider: Any) -> None:
        self.task = create_looping_call(self.log, spider)
        self.task.start(self.interval, now=False)

    def line(self, client: str) -> str:
        g = lambda name: self.stats.get(name, client)  # noqa: E731
        synced, failed, resumed = g("campaigns_synced"), g("campaigns_sync_failed"), g("campaigns_resumed")
        done = synced + failed + resumed
        total = g("campaigns_expected") or g("campaigns_seen")
        eta = eta_seconds(total - done - g("records_rejected"), synced + failed, g("requests_sent"),
                          self.limit, self.window)
        return (f"Progress {client}: {done}/{total or '?'} done ({synced} synced, {failed} failed"
                f"{f', {resumed} from before' if resumed else ''}), {g('retries')} retries, "
                f"{g('responses_429')} 429s, ETA {eta:.0f}s")

    def log(self, spider: Any) -> None:
        for client in getattr(spider, "clients", {}):
            logger.info("%s", self.line(client), extra={"client": client})

    def spider_closed(self, spider: Any, reason: str) -> None:
        if self.task and self.task.running:
            self.task.stop()
