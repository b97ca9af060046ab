"""A bare Scrapy spider sending a given number of requests at a given rate.

    python -m bench.bare URL CLIENTS REQUESTS RATE

The yardstick for the crawler's CPU per request: default Scrapy settings, no
project middlewares, pipeline or extension of ours, one download slot per
client paced by DOWNLOAD_DELAY so that all clients together send RATE requests
per second: per client one list call, then sync calls, against the same
simulator. Prints one JSON line: requests sent and answers received.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request

import scrapy
from scrapy.crawler import AsyncCrawlerProcess


class Bare(scrapy.Spider):
    name = "bare"

    def __init__(self, url: str, clients: int, requests: int, token: str, **kwargs):
        super().__init__(**kwargs)
        self.url, self.clients, self.requests, self.token = url, clients, requests, token

    async def start(self):
        per_client = self.requests // self.clients
        for n in range(per_client):
            for c in range(self.clients):
                client = f"bare{c:03d}"
                headers = {"Authorization": f"Bearer {self.token}", "X-Client-ID": client}
                meta = {"download_slot": client, "dont_retry": True}
                if n == 0:
                    yield scrapy.Request(f"{self.url}/api/campaigns?page=1&limit=100", headers=headers, meta=meta,
                                         dont_filter=True)
                else:
                    yield scrapy.Request(f"{self.url}/api/campaigns/campaign_{n}/sync", method="POST",
                                         headers=headers, meta=meta, dont_filter=True)

    def parse(self, response):
        return None


def main(url: str, clients: int, requests: int, rate: float) -> None:
    basic = base64.b64encode(b"admin@mixoads.com:SuperSecret123!").decode()
    req = urllib.request.Request(url + "/auth/token", method="POST", headers={"Authorization": f"Basic {basic}"})
    token = json.load(urllib.request.urlopen(req, timeout=10))["access_token"]
    process = AsyncCrawlerProcess({
        "LOG_LEVEL": "WARNING", "ROBOTSTXT_OBEY": False, "CONCURRENT_REQUESTS": 4096,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 16, "DOWNLOAD_DELAY": clients / rate, "RANDOMIZE_DOWNLOAD_DELAY": False,
        "TELNETCONSOLE_ENABLED": False, "HTTPERROR_ALLOW_ALL": True,
    })
    crawler = process.create_crawler(Bare)
    process.crawl(crawler, url=url, clients=clients, requests=requests, token=token)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"requests": stats.get("downloader/request_count", 0),
                      "responses": stats.get("downloader/response_count", 0)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
