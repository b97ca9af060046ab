"""Installs the secret-redacting log filter before anything else logs.

Enabled by default at the lowest order so it exists before the first request;
it also re-checks the handlers when the spider opens, since Scrapy may add its
own handler after extensions are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy import signals

from adcrawler import redaction

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class Redaction:
    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "Redaction":
        ext = cls()
        redaction.install()
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        return ext

    def spider_opened(self, spider: object) -> None:
        redaction.install()
