"""A bare Scrapy spider sending a given number of requests at a given rate.

    python -m bench.bare URL CLIENTS REQUESTS RATE [--tuned]

The yardstick for the crawler's CPU per request: Scrapy's default settings,
no middleware, pipeline or extension of ours. ``start()`` hands the requests
to Scrapy at RATE per second (a few every 50 ms), so nothing piles up in the
downloader: per client one list call, then sync calls, one download slot per
client, against the same simulator. Prints one JSON line: requests sent and
answers received.

``--tuned`` gives it the Scrapy settings and garbage-collection tuning the
crawler uses (adcrawler/settings.py, adcrawler/commands/crawl.py), so that the
difference left is the crawler's own code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import urllib.request

import scrapy
from scrapy.crawler import AsyncCrawlerProcess


class Bare(scrapy.Spider):
    name = "bare"

    def __init__(self, url: str, clients: int, requests: int, token: str, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.url, self.clients, self.requests, self.token, self.rate = url, clients, requests, token, rate

    async def start(self):
        loop = asyncio.get_running_loop()
        began, sent = loop.time(), 0
        per_client = self.requests // self.clients
        for n in range(per_client):
            for c in range(self.clients):
                client = f"bare{c:03d}"
                headers = {"Authorization": f"Bearer {self.token}", "X-Client-ID": client}
                meta = {"download_slot": client, "dont_retry": True}
                sent += 1
                due = began + sent / self.rate
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if n == 0:
                    yield scrapy.Request(f"{self.url}/api/campaigns?page=1&limit=100", headers=headers, meta=meta,
                                         dont_filter=True)
                else:
                    yield scrapy.Request(f"{self.url}/api/campaigns/campaign_{n}/sync", method="POST",
                                         headers=headers, meta=meta, dont_filter=True)

    def parse(self, response):
        return None


TUNED = ("CONCURRENT_ITEMS", "WARN_ON_GENERATOR_RETURN_VALUE", "SPIDER_MIDDLEWARES", "METAREFRESH_ENABLED",
         "COOKIES_ENABLED")


def main(url: str, clients: int, requests: int, rate: float, tuned: bool = False) -> None:
    basic = base64.b64encode(b"admin@mixoads.com:SuperSecret123!").decode()
    req = urllib.request.Request(url + "/auth/token", method="POST", headers={"Authorization": f"Basic {basic}"})
    token = json.load(urllib.request.urlopen(req, timeout=10))["access_token"]
    settings = {"LOG_LEVEL": "WARNING", "ROBOTSTXT_OBEY": False, "CONCURRENT_REQUESTS": 4096,
                "TELNETCONSOLE_ENABLED": False, "HTTPERROR_ALLOW_ALL": True}
    if tuned:
        from adcrawler import settings as ours
        from adcrawler.commands.crawl import tune_gc

        settings.update({name: getattr(ours, name) for name in TUNED})
    process = AsyncCrawlerProcess(settings)
    crawler = process.create_crawler(Bare)
    process.crawl(crawler, url=url, clients=clients, requests=requests, token=token, rate=rate)
    if tuned:
        tune_gc()
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"requests": stats.get("downloader/request_count", 0),
                      "responses": stats.get("downloader/response_count", 0)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), "--tuned" in sys.argv[5:])
