"""One progress line for the whole run every :data:`INTERVAL` (one per client at DEBUG): campaigns done
of those known, and an ETA from the rate budget, never 0 s while work remains."""

from __future__ import annotations

import logging
import math
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import create_looping_call

from adcrawler.config import scaled
from adcrawler.ledger import Progress, RunLedger
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)

INTERVAL = 30.0  # seconds between progress lines at the real clock (scaled, at least a second)


def eta_seconds(remaining: int, settled: int, requests_sent: int, limit: int, window: float) -> float:
    """Seconds the budget needs for ``remaining`` campaigns, each costing what the settled ones did
    (at least one request); the last group still takes a request's share of a window."""
    if remaining <= 0:
        return 0.0
    per_campaign = max(1.0, requests_sent / settled) if settled else 1.0
    return (math.ceil(remaining * per_campaign / limit) - 1) * window + window / limit


class ProgressLog:
    def __init__(self, crawler: Crawler, interval: float):
        self.crawler = crawler
        self.interval = interval
        self.stats = RunStats(crawler)
        self.task: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressLog:
        ext = cls(crawler, scaled(crawler.settings, INTERVAL, 1.0))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider: Any) -> None:
        self.task = create_looping_call(self.log)
        self.task.start(self.interval, now=False)

    def _eta(self, p: Progress, client: str, rate: tuple[int, float]) -> float:
        """Infinite while the listing has not said how many campaigns there are."""
        if not p.listing_done and not p.known:
            return math.inf
        return eta_seconds(p.known - p.done, p.done, self.stats.get("requests_sent", client), *rate)

    def log(self) -> None:
        ledger = RunLedger.of(self.crawler)
        clients = ledger.held()
        if not clients:
            return
        progress = {c: ledger.run(c).progress() for c in clients}
        finished = sum(1 for p in progress.values() if p.listing_done and p.done >= p.known and not p.retrying)
        listing = sum(1 for p in progress.values() if not p.listing_done)
        etas = {c: self._eta(p, c, ledger.rate) for c, p in progress.items()}
        said = {c: f"ETA {math.ceil(eta)}s" if eta < math.inf else "ETA unknown (listing)" for c, eta in etas.items()}
        # The run ends with its slowest client: each has a budget of its own.
        slowest = max(etas, key=etas.__getitem__)
        g = self.stats.get
        logger.info("Progress: %d/%d clients done%s, %d/%d campaigns done (%d synced, %d quarantined), %d retries, "
                    "%d 429s, %s", finished, len(clients), f" ({listing} listing)" if listing else "",
                    sum(p.done for p in progress.values()), sum(p.known for p in progress.values()),
                    g("campaigns_synced"), g("campaigns_quarantined"), g("retries"), g("responses_429"),
                    said[slowest])
        if logger.isEnabledFor(logging.DEBUG):
            for client, p in progress.items():
                known = p.known if p.listing_done or p.known else "?"
                logger.debug("Progress %s: %d/%s done (%d synced, %d quarantined), %d retrying, %d retries, %d 429s, "
                             "%s", client, p.done, known, g("campaigns_synced", client),
                             g("campaigns_quarantined", client), p.retrying, g("retries", client),
                             g("responses_429", client), said[client], extra={"client": client})

    def spider_closed(self, spider: Any, reason: str) -> None:
        if self.task and self.task.running:
            self.task.stop()
