"""Downloader middlewares: rate budget and 429s, bearer token, retries with backoff.

Request ``meta`` keys they share (set by the spider):

- ``adcrawler_client``: the platform client id; selects the budget and token.
  Requests without it (the token request) are neither budgeted nor authorised.
- ``adcrawler_endpoint``: ``auth``, ``list`` or ``sync``, for per-endpoint stats.
- ``adcrawler_expect_json``: a 200 that is not JSON is retried as a transient fault.
"""

from __future__ import annotations

from scrapy import Request

CLIENT = "adcrawler_client"
ENDPOINT = "adcrawler_endpoint"
EXPECT_JSON = "adcrawler_expect_json"
AUTH_REQUEST = "adcrawler_auth_request"


def client_of(request: Request) -> str | None:
    return request.meta.get(CLIENT)


def resend(request: Request, counter: str, attempt: int) -> Request:
    """A copy of ``request`` to send again, past the duplicate filter, counting
    ``attempt`` under the meta key ``counter`` (each middleware its own)."""
    retry = request.copy()
    retry.meta[counter] = attempt
    retry.dont_filter = True
    return retry
