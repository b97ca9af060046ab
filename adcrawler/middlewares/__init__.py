"""Downloader middlewares: rate budget and 429s, bearer token, retries with backoff.

Request ``meta`` keys they share (set by the spider):

- ``adcrawler_client``: the platform client id; selects the budget and token.
  Requests without it (the token request) are neither budgeted nor authorised.
- ``adcrawler_endpoint``: ``auth``, ``list`` or ``sync``, for per-endpoint stats.
- ``adcrawler_expect_json``: a 200 that is not JSON is retried as a transient fault.
"""

CLIENT = "adcrawler_client"
ENDPOINT = "adcrawler_endpoint"
EXPECT_JSON = "adcrawler_expect_json"
AUTH_REQUEST = "adcrawler_auth_request"


def client_of(request) -> str | None:
    return request.meta.get(CLIENT)
