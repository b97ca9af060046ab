"""Scrapy's redirects, without Referer handling.

API calls carry no Referer header, and this crawl turns Scrapy's
RefererMiddleware off (it wraps every callback's output for nothing). Scrapy's
RedirectMiddleware then warns on every run that no RefererMiddleware is there
to hand Referer headers on: a warning no operator can act on. This subclass
drops the Referer of a redirect copy (there is none to keep) and says nothing.
Which redirects are followed with credentials is the token middleware's
business (:mod:`adcrawler.middlewares.auth`).
"""

from __future__ import annotations

from scrapy import Request
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware as ScrapyRedirectMiddleware
from scrapy.http import Response


class RedirectMiddleware(ScrapyRedirectMiddleware):
    def handle_referer(self, request: Request, response: Response) -> None:
        request.headers.pop("Referer", None)

    def _engine_started(self) -> None:
        """Scrapy looks for a RefererMiddleware here, and warns when there is none."""
