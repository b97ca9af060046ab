"""One progress line for the whole run every :data:`INTERVAL` (and one per client at DEBUG)::

    Progress: 1/3 clients done, 145/300 campaigns done (140 synced, 5 quarantined), 12 retries, 0 429s, ETA 330s

Campaigns are counted against the work known (listed, or announced while the listing goes on);
the ETA comes from the rate budget: the campaigns left, times the requests each has needed so
far, spread over the client's budget; while work remains it is never 0 s.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call

from adcrawler.config import scaled, value
from adcrawler.ledger import RunLedger
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)

INTERVAL = 30.0  # seconds between progress lines at the real clock (scaled, at least a second)


def eta_seconds(remaining: int, settled: int, requests_sent: int, limit: int, window: float) -> float:
    """Seconds the budget needs for ``remaining`` campaigns.

    Each campaign is expected to cost as many requests as the settled ones did
    on average (at least one); ``limit`` requests fit in each ``window``, and
    the last group still takes a request's time, a fraction of a window.
    """
    if remaining <= 0:
        return 0.0
    per_campaign = max(1.0, requests_sent / settled) if settled else 1.0
    windows = math.ceil(remaining * per_campaign / limit) - 1
    return windows * window + window / limit


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
        ext = cls(crawler, scaled(s, INTERVAL, 1.0), value(s, "ADCRAWLER_RATE_LIMIT"),
                  scaled(s, value(s, "ADCRAWLER_RATE_WINDOW")))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider: Any) -> None:
        self.task = create_looping_call(self.log)
        self.task.start(self.interval, now=False)

    def _eta(self, client: str) -> float | None:
        """Seconds the client's budget still needs; None while nothing is known of its work."""
        progress = RunLedger.of(self.crawler).progress(client)
        if not progress.listing_done and not progress.known:
            return None
        return eta_seconds(progress.known - progress.done, progress.done, self.stats.get("requests_sent", client),
                           self.limit, self.window)

    def line(self, client: str) -> str:
        """One client's progress (logged at DEBUG)."""
        g = lambda name: self.stats.get(name, client)  # noqa: E731
        progress = RunLedger.of(self.crawler).progress(client)
        synced, quarantined = g("campaigns_synced"), g("campaigns_quarantined")
        known = progress.known if progress.listing_done or progress.known else "?"
        eta = self._eta(client)
        eta_text = "ETA unknown (listing)" if eta is None else f"ETA {math.ceil(eta)}s"
        return (f"Progress {client}: {progress.done}/{known} done ({synced} synced, {quarantined} quarantined), "
                f"{progress.retrying} retrying, {g('retries')} retries, {g('responses_429')} 429s, {eta_text}")

    def run_line(self, clients: list[str]) -> str:
        """The whole run's progress: clients done, campaigns done of those known, and
        the ETA of the client that needs longest (each has its own budget)."""
        ledger = RunLedger.of(self.crawler)
        progress = {c: ledger.progress(c) for c in clients}
        finished = sum(1 for p in progress.values() if p.listing_done and p.done >= p.known and not p.retrying)
        done, known = sum(p.done for p in progress.values()), sum(p.known for p in progress.values())
        listing = sum(1 for p in progress.values() if not p.listing_done)
        etas = [self._eta(c) for c in clients]
        eta = "ETA unknown (listing)" if None in etas else f"ETA {math.ceil(max(etas, default=0))}s"
        g = self.stats.get
        return (f"Progress: {finished}/{len(clients)} clients done{f' ({listing} listing)' if listing else ''}, "
                f"{done}/{known} campaigns done ({g('campaigns_synced')} synced, {g('campaigns_quarantined')} "
                f"quarantined), {g('retries')} retries, {g('responses_429')} 429s, {eta}")

    def log(self) -> None:
        clients = RunLedger.of(self.crawler).held()
        if not clients:
            return
        logger.info("%s", self.run_line(clients))
        if logger.isEnabledFor(logging.DEBUG):
            for client in clients:
                logger.debug("%s", self.line(client), extra={"client": client})

    def spider_closed(self, spider: Any, reason: str) -> None:
        if self.task and self.task.running:
            self.task.stop()
