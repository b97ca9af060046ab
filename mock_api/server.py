"""The Ad Platform simulator: an aiohttp application implementing the API contract.

Order of checks on every ``/api/*`` call, as on the platform: bearer token,
then the per-client rolling rate limit (a request counts once admitted, even if
it then fails or hangs), then the injected faults, then the endpoint itself.
``/__mock__/stats`` and ``/__mock__/reset`` exist for tests only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import secrets
import time
from collections import defaultdict, deque
from datetime import datetime, timezone

from aiohttp import web

from .campaigns import make_campaign, corrupt
from .config import MockConfig

CAMPAIGN_PATH = re.compile(r"^campaign_([1-9][0-9]{0,8})$")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _number(value: float) -> int | float:
    """Whole numbers as ints so the default scale serves ``60``, not ``60.0``."""
    return int(value) if float(value).is_integer() else round(value, 6)


def _error(status: int, error: str, message: str, headers: dict | None = None, **extra) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status, headers=headers)


class MockState:
    """Everything the simulator remembers; ``reset()`` forgets it all."""

    def __init__(self, config: MockConfig):
        self.config = config
        self.started = time.time()
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (email, issued monotonic)
        self.windows: dict[str, deque[float]] = defaultdict(deque)
        self.served: dict[tuple[str, int], int] = defaultdict(int)
        self.rngs: dict[tuple[str, str], random.Random] = {}
        self.list_calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int)))
        self.total_429 = 0
        self.tokens_issued = 0
        self.auth_failures = 0
        self.syncs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def rng(self, client: str, endpoint: str) -> random.Random:
        """One generator per (client, endpoint), so that with a seed the fault
        sequence of each client does not depend on how clients interleave."""
        key = (client, endpoint)
        if key not in self.rngs:
            seed = self.config.seed
            self.rngs[key] = random.Random(None if seed is None else f"{seed}:{client}:{endpoint}")
        return self.rngs[key]

    def count(self, client: str, endpoint: str, status: int | str) -> None:
        self.requests[client][endpoint][str(status)] += 1
        if status == 429:
            self.total_429 += 1

    def snapshot(self) -> dict:
        return {
            "requests": {c: {e: dict(s) for e, s in eps.items()} for c, eps in self.requests.items()},
            "total_429": self.total_429,
            "peak_concurrency": self.peak_in_flight,
            "in_flight": self.in_flight,
            "tokens_issued": self.tokens_issued,
            # Test-only: lets tests prove no token leaked into any output.
            "tokens": sorted(self.tokens),
            "auth_failures": self.auth_failures,
            "syncs": {c: dict(ids) for c, ids in self.syncs.items()},
        }


def _client(request: web.Request) -> str:
    return request.headers.get("X-Client-ID") or "default"


class MockApi:
    def __init__(self, config: MockConfig):
        self.config = config
        self.state = MockState(config)

    # -- plumbing -------------------------------------------------------
    @web.middleware
    async def track(self, request: web.Request, handler):
        if request.path.startswith("/__mock__"):
            return await handler(request)
        state = self.state
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            return await handler(request)
        finally:
            state.in_flight -= 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.track])
        app.router.add_post("/auth/token", self.auth_token)
        app.router.add_get("/api/campaigns", self.list_campaigns)
        app.router.add_post("/api/campaigns/{campaign_id}/sync", self.sync_campaign)
        app.router.add_get("/health", self.health)
        app.router.add_get("/__mock__/stats", self.stats)
        app.router.add_post("/__mock__/reset", self.reset)
        app.router.add_get("/__mock__/config", self.show_config)
        return app

    # -- auth -----------------------------------------------------------
    async def auth_token(self, request: web.Request) -> web.Response:
        client = _client(request)
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        failure = None
        if scheme.lower() != "basic" or not encoded:
            failure = "Missing or non-Basic Authorization header"
        else:
            try:
                email, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                failure = "Malformed Basic credentials"
            else:
                expected = self.config.accounts.get(email) if sep else None
                if expected is None or not secrets.compare_digest(expected, password):
                    failure = "Invalid credentials"
        if failure:
            self.state.auth_failures += 1
            self.state.count(client, "auth", 401)
            return _error(401, "Unauthorized", failure)
        token = secrets.token_urlsafe(32)
        self.state.tokens[token] = (email, time.monotonic())
        self.state.tokens_issued += 1
        self.state.count(client, "auth", 200)
        return web.json_response({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": _number(self.config.scaled(self.config.token_lifetime)),
            "issued_at": int(time.time()),
        })

    def _check_bearer(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Unauthorized", "Bearer token required")
        if self.config.quirks:
            return None  # the inherited simulator accepted any bearer token
        issued = self.state.tokens.get(token)
        if issued is None:
            return _error(401, "Unauthorized", "Invalid token")
        lifetime = self.config.scaled(self.config.token_lifetime - self.config.token_early_expiry)
        age = time.monotonic() - issued[1]
        if age > lifetime:
            expired_at = time.time() - (age - lifetime)
            return _error(401, "Token expired", "Access token has expired", expired_at=_iso(expired_at))
        return None

    def _check_rate(self, client: str) -> web.Response | None:
        cfg = self.config
        now = time.monotonic()
        window = self.state.windows[client]
        while window and window[0] <= now - cfg.scaled(cfg.rate_window):
            window.popleft()
        if len(window) >= cfg.rate_limit:
            wait = _number(cfg.scaled(cfg.retry_after))
            headers = None if cfg.quirks else {"Retry-After": str(wait)}
            return _error(429, "Rate limit exceeded",
                          f"Too many requests: {cfg.rate_limit} per {_number(cfg.rate_window)}s",
                          headers=headers, retry_after=wait)
        window.append(now)
        return None

    async def _guard(self, request: web.Request, endpoint: str) -> web.StreamResponse | None:
        """Bearer check, rate limit and faults; None means serve the request."""
        client = _client(request)
        failure = self._check_bearer(request) or self._check_rate(client)
        if failure is not None:
            self.state.count(client, endpoint, failure.status)
            return failure
        cfg = self.config
        if cfg.quirks and endpoint == "list":
            self.state.list_calls += 1
            if self.state.list_calls % 5 == 0:
                self.state.count(client, endpoint, 503)
                return _error(503, "Service temporarily unavailable", "Please retry later")
        p503 = getattr(cfg, f"{endpoint}_503_rate")
        phang = getattr(cfg, f"{endpoint}_hang_rate")
        if p503 or phang:
            draw = self.state.rng(client, endpoint).random()
            if draw < p503:
                self.state.count(client, endpoint, 503)
                return _error(503, "Service temporarily unavailable", "Please retry later")
            if draw < p503 + phang:
                self.state.count(client, endpoint, "hang")
                await asyncio.sleep(cfg.hang_seconds)
                return _error(504, "Gateway timeout", "The request hung")
        return None

    # -- endpoints ------------------------------------------------------
    async def list_campaigns(self, request: web.Request) -> web.StreamResponse:
        client = _client(request)
        failure = await self._guard(request, "list")
        if failure is not None:
            return failure
        cfg = self.config
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "10"))
            if page < 1 or limit < 1:
                raise ValueError
        except ValueError:
            self.state.count(client, "list", 400)
            return _error(400, "Bad Request", "page and limit must be positive integers")
        if not cfg.quirks:
            limit = min(limit, cfg.max_page_size)
        if cfg.list_garbage_rate and self.state.rng(client, "garbage").random() < cfg.list_garbage_rate:
            self.state.count(client, "list", "garbage")
            return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
        first = (page - 1) * limit + 1
        last = min(cfg.campaigns, page * limit)
        data = []
        for n in range(first, last + 1):
            campaign = make_campaign(client, n, self.state.served[client, n], cfg.hostile_names)
            self.state.served[client, n] += 1
            bad_index = n - (cfg.campaigns - cfg.malformed) - 1
            if bad_index >= 0:
                campaign = corrupt(campaign, bad_index)
            data.append(campaign)
        has_more = page < 10 if cfg.quirks else page * limit < cfg.campaigns
        self.state.count(client, "list", 200)
        return web.json_response({
            "data": data,
            "pagination": {"page": page, "limit": limit, "total": cfg.campaigns, "has_more": has_more},
        })

    async def sync_campaign(self, request: web.Request) -> web.StreamResponse:
        client = _client(request)
        failure = await self._guard(request, "sync")
        if failure is not None:
            return failure
        campaign_id = request.match_info["campaign_id"]
        match = CAMPAIGN_PATH.match(campaign_id)
        if not match or int(match.group(1)) > self.config.campaigns:
            self.state.count(client, "sync", 404)
            return _error(404, "Not Found", "Unknown campaign")
        await asyncio.sleep(self.config.scaled(self.config.sync_delay))
        self.state.count(client, "sync", 200)
        self.state.syncs[client][campaign_id] += 1
        return web.json_response({
            "success": True,
            "campaign_id": campaign_id,
            "synced_at": _iso(time.time()),
            "message": f"Campaign {campaign_id} synced successfully",
        })

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok", "timestamp": _iso(time.time()), "uptime": round(time.time() - self.state.started, 3),
        })

    # -- test-only ------------------------------------------------------
    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"reset": True})

    async def show_config(self, request: web.Request) -> web.Response:
        shown = dict(vars(self.config))
        shown["accounts"] = sorted(self.config.accounts)  # emails only, never passwords
        return web.json_response(shown)
