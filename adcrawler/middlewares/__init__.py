"""Downloader middlewares: bearer token, and acting on the verdict on each answer.

Request ``meta`` keys they share (the public ones are documented in the README):

- ``adcrawler_client``: the platform client id of an API call; selects the
  budget (in the scheduler) and the token;
- ``adcrawler_endpoint``: ``auth``, ``list`` or ``sync`` (judging answers, stats);
- ``adcrawler_token_for``: on the token request, the client it is for (token
  requests are not budgeted: the platform does not rate-limit them);
- Scrapy's ``dont_retry``, ``max_retry_times`` and ``download_timeout``.
"""

from __future__ import annotations

from scrapy import Request

CLIENT = "adcrawler_client"
ENDPOINT = "adcrawler_endpoint"
TOKEN_FOR = "adcrawler_token_for"


def client_of(request: Request) -> str | None:
    """The client a request works for: an API call's, or a token request's."""
    return request.meta.get(CLIENT) or request.meta.get(TOKEN_FOR)


def resend(request: Request, counter: str, attempt: int, **meta: object) -> Request:
    """A copy of ``request`` to send again, counting ``attempt`` under the meta
    key ``counter`` (each kind of retry its own), with extra ``meta``."""
    again = request.copy()
    again.meta[counter] = attempt
    again.meta.update(meta)
    again.dont_filter = True
    return again
