"""The run's stats as one JSON file per run (``<data dir>/stats/<start time>-<run id>.json``), written
when the engine stops, after everything that closes with the spider; old files go after
``ADCRAWLER_KEEP_DAYS``."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import run_in_thread, sleep

from adcrawler.config import DRY_RUN, value
from adcrawler.disk import write_private
from adcrawler.stats import key

logger = logging.getLogger(__name__)

# The longest a close already going on is waited for: a batch's last try (a statement's 30 s
# bound) and the run records after it.
CLOSE_WAIT = 60.0


def prune(directory: Path, keep_days: float, now: float, pattern: str = "*.json") -> list[Path]:
    """Remove the stats files (or the run logs) older than ``keep_days`` (0: keep all); returns them."""
    old = [p for p in directory.glob(pattern) if keep_days and now - p.stat().st_mtime > keep_days * 86400]
    for path in old:
        path.unlink(missing_ok=True)
    return old


class StatsDump:
    def __init__(self, crawler: Crawler, directory: Path, keep_days: float = 0):
        self.crawler = crawler
        self.directory = directory
        self.keep_days = keep_days

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StatsDump:
        s = crawler.settings
        if s.getbool(DRY_RUN):
            raise NotConfigured
        ext = cls(crawler, Path(value(s, "ADCRAWLER_DATA_DIR"), "stats"), value(s, "ADCRAWLER_KEEP_DAYS"))
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    async def engine_stopped(self) -> None:
        end = time.monotonic() + CLOSE_WAIT
        while self.crawler.engine.spider is not None and time.monotonic() < end:
            await sleep(0.1)
        stats = dict(self.crawler.stats.get_stats())
        started = stats.get("start_time") or datetime.now()
        # Named by time first: a directory listing is in the order runs started.
        path = self.directory / f"{started:%Y%m%dT%H%M%S%f}-{stats.get(key('run_id'), 'run')}.json"
        text = json.dumps(stats, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o), indent=2,
                          sort_keys=True)
        await run_in_thread(write_private, path, text)
        logger.info("Run stats written to %s", path)
        removed = await run_in_thread(prune, self.directory, self.keep_days, time.time())
        removed_logs = await run_in_thread(prune, self.directory.parent / "logs", self.keep_days, time.time(), "*.log")
        if removed or removed_logs:
            logger.info("Removed %d stats file(s) and %d run log(s) older than %g days", len(removed),
                        len(removed_logs), self.keep_days)
