"""Credentials on every request, attached when it is sent; bearer tokens per client.

``process_request`` is the one place credentials are added: Basic credentials
on the token request (read from the environment at that moment), the client's
bearer token on an API call (refreshed first if needed). ``process_response``
and ``process_exception`` remove them again, so a request copied for a retry,
or queued, never carries a stale or secret header.

Credentials are bound to the platform's origin (scheme, host and port of
``AD_PLATFORM_API_URL``). A redirect to the same origin is followed; a request
of a client that a redirect sends to any other origin is not sent at all
(``ForeignOrigin``, counted in ``redirects_refused``), and its client fails
with a reason that names the other origin: nothing more is sent for it.

Tokens: obtained on first use, refreshed ``ADCRAWLER_TOKEN_REFRESH_MARGIN``
seconds before they expire, and dropped when the platform refuses one (the
retry middleware calls :meth:`invalidate` and sends the request again). One
refresh per client is in flight; every request of that client waits for it.

The token request is judged by :mod:`adcrawler.answers` like any call and
retried here when the retry policy (:mod:`adcrawler.retrying`) says so, with
the platform's Retry-After or the backoff, on 5xx, 429,
timeouts, dropped connections and unusable answers: a failed attempt never
fails the requests waiting for the token. The client is failed only when the
platform refuses its credentials (401/403 from the token endpoint), or when
the token endpoint still fails after ``ADCRAWLER_RETRY_TIMES`` retries; its
waiting and later requests then fail without being sent.

Why a middleware and not the spider's start requests: a token belongs to the
moment a request is *sent*, not to when it was created. Requests wait in the
scheduler for their budget, come back from retries, or outlive a token; only
the last step before the downloader knows which token is valid then.

A client whose credentials fail is recorded in the run ledger; when no client
the run holds is left, the spider closes with the reason ``auth_failed``.

Settings: AD_PLATFORM_API_URL, ADCRAWLER_TOKEN_REFRESH_MARGIN, ADCRAWLER_TIMEOUT_AUTH,
ADCRAWLER_RETRY_HTTP_CODES, ADCRAWLER_RETRY_AFTER_MAX, and the retry settings
read by :class:`~adcrawler.retrying.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.utils.asyncio import sleep

from adcrawler import redaction
from adcrawler.answers import Decision, Verdict, decide_exception, decide_response
from adcrawler.clients import ClientConfigError
from adcrawler.config import value
from adcrawler.ledger import RunLedger
from adcrawler.logs import log_failure
from adcrawler.meta import CLIENT, ENDPOINT, TOKEN_FOR, TOKEN_SERIAL
from adcrawler.retrying import RetryPolicy
from adcrawler.stats import RunStats
from adcrawler.tokens import Token

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class AuthenticationFailed(IgnoreRequest):
    """The client's credentials were refused or could not be checked."""


class ForeignOrigin(AuthenticationFailed):
    """A request of a client was about to leave the platform's origin (a redirect):
    it is not sent, and the client fails with this reason."""


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``, the default port filled in."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)


@dataclass
class _ClientAuth:
    token: Token | None = None
    serial: int = 0
    refreshing: asyncio.Future | None = None
    failure: str | None = None


class BearerTokenMiddleware:
    def __init__(self, crawler: Crawler, api_url: str, margin: float, timeout: float, policy: RetryPolicy,
                 retry_codes: frozenset[int], retry_after_cap: float, clock: Callable[[], float] = time.monotonic):
        self.crawler = crawler
        self.token_url = f"{api_url}/auth/token"
        self.origin = origin(api_url)
        self.api_origin = "{}://{}:{}".format(*self.origin)
        self.margin = margin
        self.timeout = timeout
        self.policy = policy
        self.retry_codes = retry_codes
        self.retry_after_cap = retry_after_cap
        self.clock = clock
        self.stats = RunStats(crawler)
        self.ledger = RunLedger.of(crawler)
        self.clients: dict[str, _ClientAuth] = {}
        self._serials = itertools.count(1)
        self._closing: asyncio.Future | None = None
        # This component reads secrets: make sure every log handler redacts them.
        redaction.install()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BearerTokenMiddleware":
        s = crawler.settings
        return cls(crawler, value(s, "AD_PLATFORM_API_URL"), value(s, "ADCRAWLER_TOKEN_REFRESH_MARGIN"),
                   value(s, "ADCRAWLER_TIMEOUT_AUTH"), RetryPolicy.from_settings(s),
                   frozenset(value(s, "ADCRAWLER_RETRY_HTTP_CODES")), value(s, "ADCRAWLER_RETRY_AFTER_MAX"))

    # -- credentials on the wire ------------------------------------------------------
    async def process_request(self, request: Request) -> None:
        client = request.meta.get(TOKEN_FOR) or request.meta.get(CLIENT)
        if client and origin(request.url) != self.origin:
            # A redirect copy: Scrapy's redirect middleware drops the header
            # across origins, and credentials are never added back to one.
            self.stats.inc("redirects_refused", client)
            scheme, host, port = origin(request.url)
            reason = (f"the platform redirected to another origin ({scheme}://{host}:{port}); "
                      f"credentials go only to {self.api_origin}")
            if request.meta.get(CLIENT):
                self._fail(client, reason)  # the token request's refresh does it for a token request
            raise ForeignOrigin(reason)
        if request.meta.get(TOKEN_FOR):
            request.headers["Authorization"] = f"Basic {self._basic(request.meta[TOKEN_FOR])}"
        elif request.meta.get(CLIENT):
            client = request.meta[CLIENT]
            token = await self.token(client)
            auth = self.clients[client]
            request.headers["Authorization"] = f"Bearer {token.value}"
            # The token awaited, not auth.token: a refusal may have dropped that meanwhile.
            request.meta[TOKEN_SERIAL] = auth.serial if auth.token is token else None
        return None

    def process_response(self, request: Request, response: Response) -> Response:
        request.headers.pop("Authorization", None)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        request.headers.pop("Authorization", None)
        return None

    def _basic(self, client: str) -> str:
        try:
            email, password = self.ledger.run(client).client.credentials()
        except ClientConfigError as exc:
            raise AuthenticationFailed(str(exc)) from None
        basic = base64.b64encode(f"{email}:{password}".encode()).decode()
        redaction.SECRETS.add(password, basic)
        return basic

    # -- tokens -----------------------------------------------------------------------
    async def token(self, client: str) -> Token:
        """A valid token for ``client``, refreshing (once for all waiters) if needed."""
        auth = self.clients.setdefault(client, _ClientAuth())
        if auth.failure:
            raise AuthenticationFailed(auth.failure)
        if auth.token and not auth.token.needs_refresh(self.clock(), self.margin):
            return auth.token
        if auth.refreshing is None:
            auth.refreshing = asyncio.ensure_future(self._refresh(client, auth))
            # Its failure is logged by _fail and raised to every waiter; if none is left, not again.
            auth.refreshing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(auth.refreshing)

    def invalidate(self, request: Request) -> None:
        """The platform refused the token ``request`` was sent with: drop it,
        unless a newer one replaced it meanwhile."""
        auth = self.clients.get(request.meta.get(CLIENT, ""))
        if auth and auth.token and auth.serial == request.meta.get(TOKEN_SERIAL):
            auth.token = None

    async def _refresh(self, client: str, auth: _ClientAuth) -> Token:
        try:
            auth.token = await self._obtain(client)
            auth.serial = next(self._serials)
            self.stats.inc("token_refreshes", client)
            logger.info("Client %s: new bearer token, valid %.0fs", client, auth.token.expires_in,
                        extra={"client": client})
            return auth.token
        except AuthenticationFailed as exc:
            self._fail(client, str(exc))
            raise
        finally:
            auth.refreshing = None

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
            self._closing.add_done_callback(log_failure)

    async def _obtain(self, client: str) -> Token:
        """Ask the token endpoint until it gives a token or refuses the credentials."""
        for attempt in itertools.count(1):
            request = Request(self.token_url, method="POST", dont_filter=True,
                              headers={"X-Client-ID": client, "Accept": "application/json"},
                              meta={TOKEN_FOR: client, ENDPOINT: "auth", "dont_retry": True,
                                    "download_slot": f"auth:{client}", "download_timeout": self.timeout})
            try:
                response = await self.crawler.engine.download_async(request)
            except AuthenticationFailed:
                raise  # a foreign redirect of the token request included
            except Exception as exc:  # noqa: BLE001 - judged like any failed download
                decision, status = decide_exception(exc), None
            else:
                status = response.status
                decision = decide_response("auth", status, response.headers.get("Retry-After"), response.body,
                                           self.retry_codes, time.time(), self.retry_after_cap)
            if decision.verdict is Verdict.OK:
                try:
                    token = Token.from_payload(json.loads(response.body), self.clock())
                except ValueError as exc:
                    decision = Decision(Verdict.RETRY, "unusable_token")
                    logger.warning("Client %s: unusable token answer: %s", client, exc, extra={"client": client})
                else:
                    redaction.SECRETS.add(token.value)
                    return token
            if decision.verdict is Verdict.REFUSED:
                raise AuthenticationFailed(f"credentials refused by the platform (HTTP {status}); "
                                           f"check the variables named for client {client!r}")
            wait = self.policy.delay("auth", decision, attempt)
            if wait is None:
                raise AuthenticationFailed(f"token endpoint unavailable ({decision.reason}) "
                                           f"after {attempt} attempt{'s' * (attempt > 1)}")
            self.policy.count(self.stats, "auth", decision, client)
            logger.warning("Client %s: token request failed (%s); trying again in %.2fs", client,
                           decision.reason, wait, extra={"client": client})
            await sleep(wait)
        raise AssertionError("unreachable")
