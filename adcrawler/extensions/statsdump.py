"""Writes the run's stats as one JSON file per run.

Written when the engine stops, after every ``spider_closed`` handler (run
records, metrics pushes) has run. Path:
``ADCRAWLER_STATS_DIR/<start time>-<run id>.json`` (empty setting = off), so
files sort by time; a resumed run keeps its run id, so each attempt gets its
own file. Files older than ``ADCRAWLER_STATS_KEEP_DAYS`` are removed. The file holds
Scrapy's stats and ours (``adcrawler/...``, listed in the README), with dates in
ISO 8601. The same stats, as they stood when the run was recorded, go into the
run's ``sync_runs`` rows.

Settings: ADCRAWLER_STATS_DIR, ADCRAWLER_STATS_KEEP_DAYS.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import run_in_thread

from adcrawler.config import value
from adcrawler.files import write_private
from adcrawler.stats import key

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def _jsonable(obj: Any) -> Any:
    return obj.isoformat() if isinstance(obj, datetime) else str(obj)


def prune(directory: Path, keep_days: float, now: float) -> list[Path]:
    """Remove the stats files older than ``keep_days`` (0: keep all); returns them."""
    if not keep_days:
        return []
    old = [p for p in directory.glob("*.json") if now - p.stat().st_mtime > keep_days * 86400]
    for path in old:
        path.unlink(missing_ok=True)
    return old


class StatsDump:
    def __init__(self, crawler: Crawler, directory: Path, keep_days: float = 30):
        self.crawler = crawler
        self.directory = directory
        self.keep_days = keep_days
        self.path: Path | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StatsDump":
        directory = value(crawler.settings, "ADCRAWLER_STATS_DIR")
        if not directory or value(crawler.settings, "ADCRAWLER_DRY_RUN"):
            raise NotConfigured
        ext = cls(crawler, Path(directory), value(crawler.settings, "ADCRAWLER_STATS_KEEP_DAYS"))
        # Once everything that closes with the spider is done (run records,
        # metrics pushes): the file holds the run's last word, finish_time included.
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    async def engine_stopped(self) -> None:
        stats = dict(self.crawler.stats.get_stats())
        run_id = stats.get(key("run_id"), "run")
        started = stats.get("start_time") or datetime.now()
        # Named by time first: a directory listing is in the order runs started.
        self.path = self.directory / f"{started:%Y%m%dT%H%M%S%f}-{run_id}.json"
        await run_in_thread(write_private, self.path,
                            json.dumps(stats, default=_jsonable, indent=2, sort_keys=True))
        logger.info("Run stats written to %s", self.path)
        removed = await run_in_thread(prune, self.directory, self.keep_days, time.time())
        if removed:
            logger.info("Removed %d stats file(s) older than %g days", len(removed), self.keep_days)
