"""Writes the run's stats as one JSON file per run.

Written when the engine stops, after every ``spider_closed`` handler (run
records, metrics pushes) has run. Path:
``ADCRAWLER_STATS_DIR/<run id>-<start time>.json`` (empty setting = off); a
resumed run keeps its run id, so each attempt gets its own file. The file holds
Scrapy's stats and ours (``adcrawler/...``, listed in the README), with dates in
ISO 8601. The same stats, as they stood when the run was recorded, go into the
run's ``sync_runs`` rows.

Settings: ADCRAWLER_STATS_DIR.
"""

from __future__ import annotations

import json
import logging
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


class StatsDump:
    def __init__(self, crawler: Crawler, directory: Path):
        self.crawler = crawler
        self.directory = directory
        self.path: Path | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StatsDump":
        directory = value(crawler.settings, "ADCRAWLER_STATS_DIR")
        if not directory:
            raise NotConfigured
        ext = cls(crawler, Path(directory))
        # Once everything that closes with the spider is done (run records,
        # metrics pushes): the file holds the run's last word, finish_time included.
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    async def engine_stopped(self) -> None:
        stats = dict(self.crawler.stats.get_stats())
        run_id = stats.get(key("run_id"), "run")
        started = stats.get("start_time") or datetime.now()
        self.path = self.directory / f"{run_id}-{started:%Y%m%dT%H%M%S%f}.json"
        await run_in_thread(write_private, self.path,
                            json.dumps(stats, default=_jsonable, indent=2, sort_keys=True))
        logger.info("Run stats written to %s", self.path)
