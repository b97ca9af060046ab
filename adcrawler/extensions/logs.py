"""Log output: secrets redacted always, one JSON object per line on request.

Installed first (lowest order) so the filter is in place before the first
request; re-checked when the spider opens in case a handler was added since.
With ``ADCRAWLER_LOG_JSON`` each line is ``{"time", "level", "logger",
"message", "run_id", "client"?, "exception"?}``; records that name a client
(``extra={"client": ...}``) carry it as a field. Redaction runs before
formatting, so both formats are covered.

Settings: ADCRAWLER_LOG_JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scrapy import signals

from adcrawler import redaction
from adcrawler.stats import key

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class JsonFormatter(logging.Formatter):
    def __init__(self, run_id: Callable[[], str | None]):
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": self.run_id(),
        }
        client = getattr(record, "client", None)
        if client:
            data["client"] = client
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class LogOutput:
    def __init__(self, crawler: Crawler, as_json: bool):
        self.crawler = crawler
        self.as_json = as_json

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "LogOutput":
        ext = cls(crawler, crawler.settings.getbool("ADCRAWLER_LOG_JSON"))
        ext.install()
        crawler.signals.connect(ext.install, signal=signals.spider_opened)
        return ext

    def _run_id(self) -> str | None:
        try:
            return self.crawler.stats.get_value(key("run_id"))
        except RuntimeError:  # before the crawl has stats
            return None

    def install(self, spider: Any = None) -> None:
        redaction.install()
        if self.as_json:
            for handler in logging.getLogger().handlers:
                if not isinstance(handler.formatter, JsonFormatter):
                    handler.setFormatter(JsonFormatter(self._run_id))
