"""Credentials on every request, attached when it is sent (a queued or retried request never carries a
stale token), bound to the platform's origin (never sent to a redirect elsewhere); one bearer token
per client, refreshed before expiry or when refused, one refresh in flight at a time."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware as ScrapyRedirectMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from adcrawler import logs
from adcrawler.config import scaled, timeout, value
from adcrawler.ledger import RunLedger
from adcrawler.registry import ClientConfigError
from adcrawler.retry import (
    CLIENT,
    ENDPOINT,
    NOT_JSON,
    SIGNALS,
    TOKEN_FOR,
    Decision,
    GaveUp,
    RetryPolicy,
    Verdict,
    json_body,
    judge,
    judge_exception,
    keep_trying,
)
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)

TOKEN_SERIAL = "_adcrawler_token_serial"  # which token an API call was sent with
REFRESH_MARGIN = 60.0  # a token is refreshed this long before it expires, real seconds (scaled)


class AuthenticationFailed(IgnoreRequest):
    """The client's credentials were refused or could not be checked."""


class ForeignOrigin(AuthenticationFailed):
    """A request of a client was about to leave the platform's origin (a redirect)."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the default port filled in."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    obtained_at: float  # our clock when it arrived: the platform's issued_at is another clock
    expires_in: float

    def needs_refresh(self, now: float, margin: float) -> bool:
        """True once fewer than ``margin`` seconds of life remain; the margin is at most a tenth of
        the lifetime, so that short tokens are not refreshed before every call."""
        return now >= self.obtained_at + self.expires_in - min(margin, self.expires_in / 10)

    @classmethod
    def from_payload(cls, payload: object, now: float) -> Token:
        """From the ``POST /auth/token`` JSON; ValueError says what is wrong."""
        if not isinstance(payload, dict):
            raise ValueError("token response is not a JSON object")
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise ValueError("token response has no access_token")
        if str(payload.get("token_type", "Bearer")).lower() != "bearer":
            raise ValueError("token response is not a Bearer token")
        try:
            expires_in = float(payload.get("expires_in", 3600))
        except (TypeError, ValueError):
            raise ValueError("token response has a non-numeric expires_in") from None
        if not expires_in > 0:
            raise ValueError("token response has a non-positive expires_in")
        return cls(token, now, expires_in)


@dataclass
class _ClientAuth:
    token: Token | None = None
    serial: int = 0
    refreshing: asyncio.Future | None = None
    failure: str | None = None


class BearerTokenMiddleware:
    def __init__(self, crawler: Crawler):
        s = crawler.settings
        api_url = value(s, "AD_PLATFORM_API_URL")
        self.crawler = crawler
        self.outage_limit = scaled(s, value(s, "ADCRAWLER_OUTAGE_LIMIT"))  # how long a failing token endpoint is tried
        self.token_url = f"{api_url}/auth/token"
        self.origin = origin(api_url)
        self.margin = scaled(s, REFRESH_MARGIN)
        self.timeout = timeout(s, "auth")
        self.policy = RetryPolicy.from_settings(s)
        self.stats = RunStats(crawler)
        self.ledger = RunLedger.of(crawler)
        self.clients: dict[str, _ClientAuth] = {}
        self._serials = itertools.count(1)
        self._closing: asyncio.Future | None = None
        logs.redact_everywhere()  # this component reads secrets

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BearerTokenMiddleware:
        return cls(crawler)

    # -- credentials on the wire ------------------------------------------------------
    async def process_request(self, request: Request) -> None:
        client = request.meta.get(TOKEN_FOR) or request.meta.get(CLIENT)
        if client and origin(request.url) != self.origin:
            # A redirect copy: Scrapy's redirect middleware drops the header across origins,
            # and credentials are never added back to one.
            self.stats.inc("redirects_refused", client)
            reason = (f"the platform redirected to another origin ({origin(request.url)}); credentials go only to "
                      f"{self.origin}")
            if request.meta.get(CLIENT):
                self._fail(client, reason)  # a token request's refresh does it for the token request
            raise ForeignOrigin(reason)
        if request.meta.get(TOKEN_FOR):
            request.headers["Authorization"] = f"Basic {self._basic(request.meta[TOKEN_FOR])}"
        elif client:
            token = await self.token(client)
            auth = self.clients[client]
            request.headers["Authorization"] = f"Bearer {token.value}"
            # The token awaited, not auth.token: a refusal may have dropped that meanwhile.
            request.meta[TOKEN_SERIAL] = auth.serial if auth.token is token else None

    def process_response(self, request: Request, response: Response) -> Response:
        request.headers.pop("Authorization", None)
        if response.status == 401 and request.meta.get(CLIENT):
            self.invalidate(request)  # refused (expired early, revoked): the next send gets a new one
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        request.headers.pop("Authorization", None)

    def _basic(self, client: str) -> str:
        try:
            email, password = self.ledger.run(client).client.credentials()
        except ClientConfigError as exc:
            raise AuthenticationFailed(str(exc)) from None
        basic = base64.b64encode(f"{email}:{password}".encode()).decode()
        logs.SECRETS.add(password, basic)
        return basic

    # -- tokens -----------------------------------------------------------------------
    async def token(self, client: str) -> Token:
        """A valid token for ``client``, refreshing (once for all waiters) if needed."""
        auth = self.clients.setdefault(client, _ClientAuth())
        if auth.failure:
            raise AuthenticationFailed(auth.failure)
        if auth.token and not auth.token.needs_refresh(time.monotonic(), self.margin):
            return auth.token
        if auth.refreshing is None:
            auth.refreshing = asyncio.ensure_future(self._refresh(client, auth))
            # Its failure is logged by _fail and raised to every waiter; if none is left, not again.
            auth.refreshing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(auth.refreshing)

    def invalidate(self, request: Request) -> None:
        """Drop the token ``request`` was sent with, unless a newer one replaced it meanwhile."""
        auth = self.clients.get(request.meta.get(CLIENT, ""))
        if auth and auth.token and auth.serial == request.meta.get(TOKEN_SERIAL):
            auth.token = None

    async def _refresh(self, client: str, auth: _ClientAuth) -> Token:
        try:
            auth.token = await self._obtain(client)
        except AuthenticationFailed as exc:
            self._fail(client, str(exc))
            raise
        finally:
            auth.refreshing = None
        auth.serial = next(self._serials)
        self.stats.inc("token_refreshes", client)
        logger.info("Client %s: new bearer token, valid %.0fs", client, auth.token.expires_in, extra={"client": client})
        return auth.token

    def _fail(self, client: str, reason: str) -> None:
        """The client cannot be authenticated: nothing more is sent for it."""
        auth = self.clients.setdefault(client, _ClientAuth())
        if auth.failure:
            return
        auth.failure = reason
        logger.error("Client %s: %s", client, reason, extra={"client": client})
        if self.ledger.fail_auth(client, reason):
            logger.error("No client could authenticate; closing the spider")
            # Kept: the event loop holds only a weak reference to tasks.
            self._closing = asyncio.ensure_future(self.crawler.engine.close_spider_async(reason="auth_failed"))
            self._closing.add_done_callback(logs.log_failure)

    async def _obtain(self, client: str) -> Token:
        """Ask the token endpoint, as the retry policy says, until it gives a token or refuses."""

        async def attempt() -> tuple[Decision, Token | None]:
            request = Request(self.token_url, method="POST", dont_filter=True,
                              headers={"X-Client-ID": client, "Accept": "application/json"},
                              meta={TOKEN_FOR: client, ENDPOINT: "auth", "dont_retry": True,
                                    "download_slot": f"auth:{client}", "download_timeout": self.timeout})
            try:
                response = await self.crawler.engine.download_async(request)
            except AuthenticationFailed:
                raise  # a foreign redirect of the token request included
            except Exception as exc:  # noqa: BLE001 - judged like any failed download
                return judge_exception(exc), None
            decision = judge("auth", response.status, request.meta.get(SIGNALS), response.body)
            if decision.verdict is Verdict.REFUSED:
                raise AuthenticationFailed(f"credentials refused by the platform (HTTP {response.status}); "
                                           f"check the variables named for client {client!r}")
            if decision.verdict is not Verdict.OK:
                return decision, None
            payload = json_body(response.body)
            try:
                token = Token.from_payload(None if payload is NOT_JSON else payload, time.monotonic())
            except ValueError as exc:
                logger.warning("Client %s: unusable token answer: %s", client, exc, extra={"client": client})
                return Decision(Verdict.RETRY, "unusable_token"), None
            logs.SECRETS.add(token.value)
            return decision, token

        try:  # an outage of the token endpoint is waited out, one try per backoff, like the API's
            return await keep_trying("auth", attempt, self.policy, self.stats, client,
                                     patience=lambda: self.outage_limit)
        except GaveUp as exc:
            tries = f"{exc.attempts} attempt{'s' * (exc.attempts > 1)}"
            if self.outage_limit and exc.elapsed >= self.outage_limit:
                since = datetime.fromtimestamp(time.time() - exc.elapsed, timezone.utc)
                raise AuthenticationFailed(f"platform unavailable since {since:%H:%M:%S} UTC: token endpoint "
                                           f"{exc.decision.reason}, {tries}") from None
            raise AuthenticationFailed(f"token endpoint unavailable ({exc.decision.reason}) after {tries}") from None


class RedirectMiddleware(ScrapyRedirectMiddleware):
    """Scrapy's redirects without Referer handling: API calls carry no Referer, RefererMiddleware
    is off, and Scrapy would warn on every run that it is not there to hand one on."""

    def handle_referer(self, request: Request, response: Response) -> None:
        request.headers.pop("Referer", None)

    def _engine_started(self) -> None:
        """Scrapy looks for a RefererMiddleware here, and warns when there is none."""
