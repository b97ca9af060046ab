"""Counts every answer from the platform per client, endpoint and status.

Scrapy's ``downloader/response_status_count/*`` mixes clients and endpoints;
an operator needs "503s on sync for client X". Counted on ``response_downloaded``,
so answers that a middleware then retried (429, 503, 401) are counted too.
Stat keys: ``adcrawler/responses/<endpoint>_<status>`` and the same per client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.http import Response

from adcrawler.meta import ENDPOINT, client_of
from adcrawler.stats import RunStats

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class TrafficStats:
    def __init__(self, stats: RunStats):
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "TrafficStats":
        ext = cls(RunStats(crawler))
        crawler.signals.connect(ext.response_downloaded, signal=signals.response_downloaded)
        return ext

    def response_downloaded(self, response: Response, request: Request, spider: Any = None) -> None:
        endpoint = request.meta.get(ENDPOINT)
        if endpoint is None:
            return
        self.stats.inc("responses", client_of(request), reason=f"{endpoint}_{response.status}")
