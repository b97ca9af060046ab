"""Bearer token per client: obtained on first use, attached at send time, refreshed.

The token is attached in ``process_request`` of the last middleware before the
downloader, after the rate budget's wait, so a request that waited, queued or
is a retry never carries a stale token; the header is removed again when the
answer comes back, so it is never copied into a retry or written to a job
directory. A token is refreshed ``ADCRAWLER_TOKEN_REFRESH_MARGIN`` seconds
before it expires, and on a 401 (``Token expired`` or an unknown token) it is
dropped and the request sent again, at most twice. Only one refresh per client
is in flight; every other request of that client waits for it.

Wrong credentials (a 401 from ``/auth/token``) fail the client at once: its
requests are dropped without being sent, and when no client is left the spider
closes with the reason ``auth_failed``.

Settings: ADCRAWLER_API_URL, ADCRAWLER_TOKEN_REFRESH_MARGIN, ADCRAWLER_TIMEOUT_AUTH.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from adcrawler.clients import ClientConfigError
from adcrawler.redaction import SECRETS
from adcrawler.settings_check import positive_float
from adcrawler.stats import RunStats
from adcrawler.tokens import Token

from . import AUTH_REQUEST, ENDPOINT, client_of, resend

# The client a token request is for (not CLIENT: that would budget it).
CLIENT_OF_AUTH = "adcrawler_auth_client"

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

EXPIRED_RETRIES = "adcrawler_token_retries"
MAX_EXPIRED_RETRIES = 2


class AuthenticationFailed(IgnoreRequest):
    """The client's credentials were refused or could not be checked."""


@dataclass
class _ClientAuth:
    token: Token | None = None
    refreshing: asyncio.Future | None = None
    failure: str | None = None


class BearerTokenMiddleware:
    def __init__(self, crawler: Crawler, api_url: str, margin: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        self.crawler = crawler
        self.api_url = api_url.rstrip("/")
        self.margin = margin
        self.timeout = timeout
        self.clock = clock
        self.stats = RunStats(crawler)
        self.clients: dict[str, _ClientAuth] = {}
        self._closing: asyncio.Future | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BearerTokenMiddleware":
        s = crawler.settings
        return cls(crawler, s.get("ADCRAWLER_API_URL"),
                   positive_float(s, "ADCRAWLER_TOKEN_REFRESH_MARGIN", allow_zero=True),
                   positive_float(s, "ADCRAWLER_TIMEOUT_AUTH"))

    async def process_request(self, request: Request) -> None:
        client = client_of(request)
        if client is None or request.meta.get(AUTH_REQUEST):
            return None
        token = await self.token(client)
        request.headers["Authorization"] = f"Bearer {token.value}"
        request.meta["_adcrawler_token_at"] = token.obtained_at
        return None

    async def token(self, client: str) -> Token:
        """A valid token for ``client``, refreshing (once for all waiters) if needed."""
        auth = self.clients.setdefault(client, _ClientAuth())
        if auth.failure:
            raise AuthenticationFailed(auth.failure)
        if auth.token and not auth.token.needs_refresh(self.clock(), self.margin):
            return auth.token
        if auth.refreshing is None:
            auth.refreshing = asyncio.ensure_future(self._refresh(client, auth))
        return await asyncio.shield(auth.refreshing)

    async def _refresh(self, client: str, auth: _ClientAuth) -> Token:
        try:
            auth.token = await self._obtain(client)
            self.stats.inc("token_refreshes", client)
            logger.info("Client %s: new bearer token, valid %.0fs", client, auth.token.expires_in,
                        extra={"client": client})
            return auth.token
        except AuthenticationFailed as exc:
            auth.failure = str(exc)
            self.stats.inc("auth_failed", client)
            logger.error("Client %s: %s", client, exc, extra={"client": client})
            self._close_if_no_client_left()
            raise
        finally:
            auth.refreshing = None

    async def _obtain(self, client: str) -> Token:
        spider = self.crawler.spider
        try:
            email, password = spider.clients[client].credentials()
        except ClientConfigError as exc:
            raise AuthenticationFailed(str(exc)) from None
        basic = base64.b64encode(f"{email}:{password}".encode()).decode()
        SECRETS.add(password, basic)
        request = Request(
            f"{self.api_url}/auth/token", method="POST", dont_filter=True,
            headers={"Authorization": f"Basic {basic}", "X-Client-ID": client, "Accept": "application/json"},
            meta={AUTH_REQUEST: True, ENDPOINT: "auth", CLIENT_OF_AUTH: client,
                  "download_slot": f"auth:{client}", "download_timeout": self.timeout},
        )
        try:
            response = await self.crawler.engine.download_async(request)
        except Exception as exc:  # timeouts and connection errors, after retries
            raise AuthenticationFailed(f"token endpoint unreachable: {type(exc).__name__}") from None
        finally:
            request.headers.pop("Authorization", None)
        if response.status in (401, 403):
            raise AuthenticationFailed(f"credentials refused by the platform (HTTP {response.status}); "
                                       f"check the variables named for client {client!r}")
        if response.status != 200:
            raise AuthenticationFailed(f"token endpoint answered HTTP {response.status}")
        try:
            token = Token.from_payload(json.loads(response.body), self.clock())
        except ValueError as exc:
            raise AuthenticationFailed(f"unusable token response: {exc}") from None
        SECRETS.add(token.value)
        return token

    def _close_if_no_client_left(self) -> None:
        spider = self.crawler.spider
        if all(self.clients.get(c, _ClientAuth()).failure for c in spider.clients):
            logger.error("No client could authenticate; closing the spider")
            # Kept: the event loop holds only a weak reference to tasks.
            self._closing = asyncio.ensure_future(self.crawler.engine.close_spider_async(reason="auth_failed"))

    def process_response(self, request: Request, response: Response) -> Request | Response:
        sent_with = request.meta.pop("_adcrawler_token_at", None)
        request.headers.pop("Authorization", None)
        client = client_of(request)
        if response.status != 401 or client is None or request.meta.get(AUTH_REQUEST):
            return response
        self.stats.inc("token_expired", client)
        auth = self.clients.get(client)
        if auth and auth.token and auth.token.obtained_at == sent_with:
            auth.token = None  # refused: the next request fetches a new one
        attempt = request.meta.get(EXPIRED_RETRIES, 0) + 1
        if attempt > MAX_EXPIRED_RETRIES:
            return response
        logger.info("Client %s: token refused on %s, refreshing and sending again", client, request.url,
                    extra={"client": client})
        return resend(request, EXPIRED_RETRIES, attempt)

    def process_exception(self, request: Request, exception: Exception) -> None:
        request.meta.pop("_adcrawler_token_at", None)
        request.headers.pop("Authorization", None)
        return None
