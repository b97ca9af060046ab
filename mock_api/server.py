"""The Ad Platform simulator: an aiohttp application implementing the API contract.

Order of checks on every ``/api/*`` call, as on the platform: bearer token,
then the per-client rolling rate limit (a request counts once admitted, even if
it then fails or hangs), then the injected faults, then the endpoint itself.
``/auth/token`` is not rate limited but has faults of its own.
``/__mock__/*`` exists for tests only.

With ``quirks`` the application is the inherited Express simulator, fact for
fact: any bearer token is accepted until an hour after the last token was
issued (one clock for everyone), a 429 carries ``retry_after`` in the body only,
``limit`` is not capped, ``has_more`` is ``page < 10``, a page past the end is
filled with invented campaigns, sync accepts any id, and one counter over all
list calls makes every 10th call hang and every other 5th call answer 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import random
import re
import secrets
import time
import zlib
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .campaigns import (
    EXTRA_FIELDS,
    PARSER_LIMIT_TEXT,
    apply_block,
    as_numeric_strings,
    js_parse_int,
    make_campaign,
    quirks_campaign,
)
from .config import FAULTS, MockConfig
from .window import Window

CAMPAIGN_PATH = re.compile(r"^campaign_([1-9][0-9]{0,8})$")
QUIRKS_MAX_LIMIT = 10_000  # the inherited server had none; this keeps a typo from eating the memory


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _number(value: float) -> int | float:
    """Whole numbers as ints so the default scale serves ``60``, not ``60.0``."""
    return int(value) if float(value).is_integer() else round(value, 6)


def _sf_decimal(value: float) -> str:
    """A non-negative number as a Structured Field decimal (at most three fractional digits)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _error(status: int, error: str, message: str, headers: dict | None = None, **extra) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status, headers=headers)


class MockState:
    """Everything the simulator remembers; ``reset()`` forgets it all."""

    def __init__(self, config: MockConfig):
        self.config = config
        self.started = time.time()
        self.reset()

    def reset(self) -> None:
        if hasattr(self, "released"):
            self.released.set()  # nothing held waits on a forgotten event
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (email, issued monotonic)
        self.revoked: set[str] = set()
        self.last_issued = time.monotonic()  # quirks: one token clock for everyone
        self.windows: dict[str, Window] = {}  # by client, or by account (--shared-budget)
        self.served: dict[tuple[str, int], int] = defaultdict(int)
        self.served_ids: dict[str, set[str]] = defaultdict(set)
        self.rngs: dict[tuple[str, str], random.Random] = {}
        self.list_calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int)))
        self.total_429 = 0
        self.total_rate_limited = 0  # answers over the limit, whatever their status (--rate-limited-status)
        self.tokens_issued = 0
        self.auth_failures = 0
        self.syncs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.sync_calls: dict[str, int] = defaultdict(int)  # sync calls received per client
        self.sync_tries: dict[tuple[str, str], int] = defaultdict(int)  # per campaign (--sync-fail-first)
        self.held = 0  # sync calls waiting for a release (--hold-syncs)
        self.partition_calls: dict[str, int] = defaultdict(int)  # requests per client (--partitions)
        self.partition_moves = 0
        self.released = asyncio.Event()
        self.down_until = 0.0  # monotonic: until then every call answers 503 (POST /__mock__/outage)
        self.results: dict[tuple[str, str], dict] = {}  # (client, Idempotency-Key) -> the sync's result

    def rng(self, client: str, purpose: str) -> random.Random:
        """One generator per (client, purpose), so that with a seed the fault
        sequence of each client does not depend on how clients interleave."""
        key = (client, purpose)
        if key not in self.rngs:
            seed = self.config.seed
            self.rngs[key] = random.Random(None if seed is None else f"{seed}:{client}:{purpose}")
        return self.rngs[key]

    def count(self, client: str, endpoint: str, status: int | str) -> None:
        self.requests[client][endpoint][str(status)] += 1
        if status == 429:
            self.total_429 += 1

    def snapshot(self) -> dict:
        return {
            "requests": {c: {e: dict(s) for e, s in eps.items()} for c, eps in self.requests.items()},
            "total_429": self.total_429,
            "total_rate_limited": self.total_rate_limited,
            "peak_concurrency": self.peak_in_flight,
            "in_flight": self.in_flight,
            "tokens_issued": self.tokens_issued,
            # Test-only: lets tests prove no token leaked into any output.
            "tokens": sorted(self.tokens),
            "revoked": len(self.revoked),
            "auth_failures": self.auth_failures,
            "syncs": {c: dict(ids) for c, ids in self.syncs.items()},
            # Distinct campaign ids served per client (invented ones included).
            "served": {c: sorted(ids) for c, ids in self.served_ids.items()},
            "held": self.held,
            "partition_moves": self.partition_moves,
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
        if time.monotonic() < self.state.down_until:  # an outage: the token endpoint included
            endpoint = {"/auth/token": "auth", "/api/campaigns": "list"}.get(request.path, "sync")
            self.state.count(_client(request), endpoint, "outage")
            return _error(503, "Service unavailable", "The platform is down")
        redirect = self._redirect(request)
        if redirect is not None:
            return redirect
        state = self.state
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            response = await handler(request)
        finally:
            state.in_flight -= 1
        if self.config.ratelimit_headers != "none" and "rate_key" in request and isinstance(response, web.Response):
            response.headers.update(self._rate_headers(request["rate_key"]))
        if self.config.gzip and isinstance(response, web.Response) and response.content_type == "application/json":
            response.enable_compression()  # gzip or deflate, as the client's Accept-Encoding allows
        return response

    def _redirect(self, request: web.Request) -> web.Response | None:
        """--redirect-endpoint: send the call elsewhere once (the copy carries redirected=1)."""
        config = self.config
        endpoint = {"/auth/token": "auth", "/api/campaigns": "list"}.get(
            request.path, "sync" if request.path.endswith("/sync") else "")
        if not config.redirect_endpoint or endpoint != config.redirect_endpoint or "redirected" in request.query:
            return None
        base = "" if config.redirect_to == "self" else config.redirect_to.rstrip("/")
        query = f"{request.query_string}&redirected=1" if request.query_string else "redirected=1"
        self.state.count(_client(request), endpoint, config.redirect_status)
        return web.Response(status=config.redirect_status, headers={"Location": f"{base}{request.path}?{query}"})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.track])
        app.router.add_post("/auth/token", self.auth_token)
        app.router.add_get("/api/campaigns", self.list_campaigns)
        app.router.add_post("/api/campaigns/{campaign_id}/sync", self.sync_campaign)
        app.router.add_get("/health", self.health)
        app.router.add_get("/__mock__/stats", self.stats)
        app.router.add_post("/__mock__/reset", self.reset)
        app.router.add_post("/__mock__/revoke", self.revoke)
        app.router.add_post("/__mock__/release", self.release)
        app.router.add_post("/__mock__/expire", self.expire)
        app.router.add_post("/__mock__/outage", self.outage)
        app.router.add_post("/__mock__/campaigns", self.set_campaigns)
        app.router.add_get("/__mock__/config", self.show_config)
        return app

    # -- faults -----------------------------------------------------------
    async def _fault(self, request: web.Request, client: str, endpoint: str) -> web.StreamResponse | None:
        """Draw this call's injected fault, if any; None means no fault."""
        cfg = self.config
        rates = [(fault, cfg.fault(endpoint, fault)) for fault in FAULTS]
        if not any(rate for _, rate in rates):
            return None
        draw = self.state.rng(client, endpoint).random()
        fault = None
        for name, rate in rates:  # one draw: each fault takes its slice of [0, 1)
            if draw < rate:
                fault = name
                break
            draw -= rate
        if fault is None:
            return None
        self.state.count(client, endpoint, fault)
        if fault == "503":
            headers = {"Retry-After": str(_number(cfg.scaled(cfg.fault_retry_after)))} \
                if cfg.fault_retry_after else None
            return _error(503, "Service temporarily unavailable", "Please retry later", headers=headers)
        if fault == "429":
            return self._too_many()
        if fault == "401":
            if endpoint == "auth":
                return _error(401, "Unauthorized", "Invalid credentials")
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            self.state.revoked.add(token)
            return _error(401, "Unauthorized", "Token revoked")
        if fault == "garbage":
            return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
        if fault == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing more to send on a dropped connection
        await asyncio.sleep(cfg.hang_seconds)  # hang
        return _error(504, "Gateway timeout", "The request hung")

    def _too_many(self) -> web.Response:
        cfg = self.config
        wait = _number(cfg.scaled(cfg.retry_after))
        self.state.total_rate_limited += 1
        if cfg.rate_limited_status != 429 and not cfg.quirks:
            return _error(cfg.rate_limited_status, "Forbidden" if cfg.rate_limited_status == 403 else "Bad Request",
                          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                          headers={"retry-after": str(wait)})
        if cfg.quirks:
            return _error(429, "Rate limit exceeded", f"Too many requests. Limit: {cfg.rate_limit} per minute",
                          retry_after=wait)
        return _error(429, "Rate limit exceeded",
                      f"Too many requests: {cfg.rate_limit} per {_number(cfg.rate_window)}s",
                      headers={"Retry-After": str(wait)}, retry_after=wait)

    # -- auth -----------------------------------------------------------
    async def auth_token(self, request: web.Request) -> web.StreamResponse:
        client = _client(request)
        fault = await self._fault(request, client, "auth")
        if fault is not None:
            return fault
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
            if self.config.quirks:
                if failure == "Invalid credentials":
                    return _error(401, "Invalid credentials", "Email or password is incorrect")
                return _error(401, "Unauthorized", "Missing or invalid Authorization header. Expected: Basic <base64>")
            return _error(401, "Unauthorized", failure)
        now = time.monotonic()
        token = f"mock_access_token_{int(time.time() * 1000)}" if self.config.quirks else secrets.token_urlsafe(32)
        self.state.tokens[token] = (email, now)
        self.state.last_issued = now
        self.state.tokens_issued += 1
        self.state.count(client, "auth", 200)
        return web.json_response({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": _number(self.config.scaled(self.config.token_lifetime)),
            "issued_at": int(time.time()),
        })

    def _check_bearer(self, request: web.Request) -> web.Response | None:
        cfg = self.config
        header = request.headers.get("Authorization", "")
        if cfg.quirks:
            if not header.startswith("Bearer "):
                return _error(401, "Unauthorized", "Missing or invalid Bearer token")
            age = time.monotonic() - self.state.last_issued
            lifetime = cfg.scaled(cfg.token_lifetime)
            if age > lifetime:  # whatever the token: one clock for everyone
                return _error(401, "Token expired", "Access token has expired. Please obtain a new token.",
                              expired_at=_iso(time.time() - (age - lifetime)))
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Unauthorized", "Bearer token required")
        issued = self.state.tokens.get(token)
        if issued is None or token in self.state.revoked:
            return _error(401, "Unauthorized", "Invalid token")
        lifetime = cfg.scaled(cfg.token_lifetime - cfg.token_early_expiry)
        age = time.monotonic() - issued[1]
        if age > lifetime:
            expired_at = time.time() - (age - lifetime)
            return _error(401, "Token expired", "Access token has expired", expired_at=_iso(expired_at))
        return None

    def _rate_key(self, request: web.Request, client: str) -> str:
        """Whose budget a request spends: its client's, its account's (--shared-budget) or its
        partition's (--partitions), which may change every --partition-every requests."""
        cfg = self.config
        if cfg.partitions and not cfg.quirks:
            state = self.state
            calls = state.partition_calls[client]
            state.partition_calls[client] += 1
            moves = calls // cfg.partition_every if cfg.partition_every else 0
            index = (zlib.crc32(client.encode()) + moves) % cfg.partitions
            if cfg.partition_every and calls and calls % cfg.partition_every == 0:
                state.partition_moves += 1
            return f"partition:{index}"
        if self.config.shared_budget and not self.config.quirks:
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            issued = self.state.tokens.get(token)
            if issued is not None:
                return f"account:{issued[0]}"
        return client

    def _window(self, key: str) -> Window:
        cfg = self.config
        if key not in self.state.windows:
            schedule = [(cfg.scaled(at), limit) for at, limit in cfg.limit_schedule]
            # --limit-schedule counts from the budget's first request.
            self.state.windows[key] = Window(cfg.rate_limit, cfg.scaled(cfg.rate_window), schedule,
                                             start=time.monotonic())
        return self.state.windows[key]

    def _check_rate(self, request: web.Request, client: str) -> web.Response | None:
        key = self._rate_key(request, client)
        request["rate_key"] = key  # the answer says what is left of this budget (--ratelimit-headers)
        if not self._window(key).admit(time.monotonic()):
            return self._too_many()
        return None

    def _rate_headers(self, key: str) -> dict[str, str]:
        """What the platform says of the budget ``key`` on an answer, in the --ratelimit-headers style."""
        cfg, window = self.config, self._window(key)
        now = time.monotonic()
        remaining = window.remaining(now)
        limit, _, _ = window.limits(now)
        if remaining:  # seconds until the oldest request leaves the window
            reset = window.arrivals[0] + window.window - now if window.arrivals else window.window
        else:
            reset = window.reset(now)
        reset = max(0.0, reset - cfg.scaled(cfg.reset_early))  # a platform that lies a little
        style = cfg.ratelimit_headers
        # Integers, as the draft says, at the real clock; decimals when the clock is scaled
        # (a whole second is a third of a window at time scale 0.05).
        seconds = (lambda v: str(math.ceil(v))) if cfg.time_scale == 1 else _sf_decimal
        if style == "ietf":
            shared = key.startswith(("account:", "partition:"))
            pk = f';pk=:{base64.b64encode(key.encode()).decode()}:' if shared else ""
            return {"RateLimit-Policy": f'"default";q={limit};w={seconds(window.window)}{pk}',
                    "RateLimit": f'"default";r={remaining};t={seconds(reset)}'}
        if style == "ietf-06":
            return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
                    "RateLimit-Reset": seconds(reset)}
        if style == "shopify":
            return {"X-Shopify-Shop-Api-Call-Limit": f"{limit - remaining}/{limit}"}
        resets = {"x-delta": seconds(reset), "x-epoch": str(math.ceil(time.time() + reset)),
                  "x-epoch-ms": str(math.ceil((time.time() + reset) * 1000))}
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": resets[style]}

    async def _guard(self, request: web.Request, endpoint: str) -> web.StreamResponse | None:
        """Bearer check, rate limit and faults; None means serve the request."""
        client = _client(request)
        failure = self._check_bearer(request) or self._check_rate(request, client)
        if failure is not None:
            self.state.count(client, endpoint, failure.status)
            return failure
        if self.config.quirks and endpoint == "list":
            self.state.list_calls += 1
            if self.state.list_calls % 10 == 0:
                self.state.count(client, endpoint, "hang")
                await asyncio.sleep(self.config.hang_seconds)
                return _error(504, "Gateway timeout", "The request hung")
            if self.state.list_calls % 5 == 0:
                self.state.count(client, endpoint, 503)
                return _error(503, "Service temporarily unavailable",
                              "The service is experiencing issues. Please retry after a short delay.")
        return await self._fault(request, client, endpoint)

    # -- endpoints ------------------------------------------------------
    async def list_campaigns(self, request: web.Request) -> web.StreamResponse:
        client = _client(request)
        failure = await self._guard(request, "list")
        if failure is not None:
            return failure
        if self.config.quirks:
            return self._quirks_list(request, client)
        cfg = self.config
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "10"))
            if page < 1 or limit < 1:
                raise ValueError
        except ValueError:
            self.state.count(client, "list", 400)
            return _error(400, "Bad Request", "page and limit must be positive integers")
        limit = min(limit, cfg.max_page_size)
        size = min(limit, cfg.page_cap) if cfg.page_cap else limit  # what is served; limit is what is echoed
        served_page = 1 if cfg.ignore_page else page
        first = (served_page - 1) * size + 1
        last = served_page * size if cfg.endless else min(cfg.campaigns, served_page * size)
        data = [self._record(client, n) for n in range(first, last + 1)]
        if cfg.shifting_list and served_page == 2:  # the list moved under the client: page 1's last again
            data.insert(0, self._record(client, first - 1))
        has_more = True if cfg.ignore_page or cfg.endless else page * size < cfg.campaigns
        pagination: dict[str, Any] = {"page": page, "limit": limit, "has_more": has_more}
        if cfg.announced_total != "none":
            pagination["total"] = int(cfg.announced_total) if cfg.announced_total else cfg.campaigns
        self.state.count(client, "list", 200)
        text = json.dumps({"data": data, "pagination": pagination})
        for placeholder, hostile in PARSER_LIMIT_TEXT.items():
            text = text.replace(placeholder, hostile)
        return web.Response(text=text, content_type="application/json")

    def _record(self, client: str, n: int) -> Any:
        cfg = self.config
        record: Any = make_campaign(client, n, self.state.served[client, n], cfg.hostile_names)
        self.state.served[client, n] += 1
        if cfg.unknown_fields:
            record.update(EXTRA_FIELDS)
        if cfg.changing_fields:
            record["revision"] = self.state.served[client, n]
        # Blocks of special campaigns, counted from the last one down.
        edge = cfg.campaigns
        for block, count in (("malformed", cfg.malformed), ("out_of_range", cfg.out_of_range),
                             ("missing", cfg.missing_values), ("odd_values", cfg.odd_values),
                             ("parser_limit", cfg.parser_limits), ("forged_keys", cfg.forged_keys),
                             ("implausible", cfg.implausible), ("unknown_status", cfg.unknown_statuses)):
            if edge - count < n <= edge:
                record = apply_block(record, block, n - (edge - count) - 1)
                break
            edge -= count
        # Last: a block computes with the numbers (clicks above impressions...), then they may turn to text.
        if cfg.numeric_strings and isinstance(record, dict) \
                and random.Random(f"{client}:{n}:strings").random() < cfg.numeric_strings:
            record = as_numeric_strings(record)
        self._served(client, record)
        return record

    def _served(self, client: str, record: Any) -> None:
        if isinstance(record, dict) and isinstance(record.get("id"), (str, int)) \
                and not isinstance(record.get("id"), bool):
            self.state.served_ids[client].add(str(record["id"]))

    def _quirks_list(self, request: web.Request, client: str) -> web.Response:
        # parseInt(x) || default, as in the inherited server: no 400s.
        page = js_parse_int(request.query.get("page")) or 1
        limit = min(js_parse_int(request.query.get("limit")) or 10, QUIRKS_MAX_LIMIT)
        rng = self.state.rng(client, "quirks-data")
        data = [quirks_campaign((page - 1) * limit + i + 1, rng) for i in range(max(0, limit))]
        for record in data:
            self._served(client, record)
        self.state.count(client, "list", 200)
        return web.json_response({
            "data": data,
            "pagination": {"page": page, "limit": limit, "total": self.config.campaigns, "has_more": page < 10},
        })

    async def sync_campaign(self, request: web.Request) -> web.StreamResponse:
        client = _client(request)
        failure = await self._guard(request, "sync")
        if failure is not None:
            return failure
        campaign_id = request.match_info["campaign_id"]
        if not self.config.quirks:  # the inherited server synced any id, invented ones too
            match = CAMPAIGN_PATH.match(campaign_id)
            if not match or (int(match.group(1)) > self.config.campaigns and not self.config.endless):
                self.state.count(client, "sync", 404)
                return _error(404, "Not Found", "Unknown campaign")
        self.state.sync_tries[client, campaign_id] += 1
        unlucky = campaign_id.endswith("0")  # every tenth campaign (--sync-fail-first)
        if unlucky and self.state.sync_tries[client, campaign_id] <= self.config.sync_fail_first:
            self.state.count(client, "sync", 503)
            return _error(503, "Service temporarily unavailable", "Please retry later")
        key = request.headers.get("Idempotency-Key")
        if self.config.honour_keys and key and (client, key) in self.state.results:
            self.state.count(client, "sync", 200)
            return web.json_response(self.state.results[client, key])
        await self._hold(client)
        await asyncio.sleep(self.config.scaled(self.config.sync_delay))
        self.state.syncs[client][campaign_id] += 1  # executed
        result = {
            "success": True,
            "campaign_id": campaign_id,
            "synced_at": _iso(time.time()),
            "message": "Campaign data synced successfully" if self.config.quirks
            else f"Campaign {campaign_id} synced successfully",
        }
        if key and self.config.honour_keys:
            self.state.results[client, key] = result
        if self.state.rng(client, "lost").random() < self.config.sync_lost_rate:
            self.state.count(client, "sync", "lost")
            await asyncio.sleep(self.config.hang_seconds)
            return _error(504, "Gateway timeout", "The answer was lost")
        self.state.count(client, "sync", 200)
        return web.json_response(result)

    async def _hold(self, client: str) -> None:
        """--hold-syncs: past the first N sync calls of a client, wait for a release."""
        state, config = self.state, self.config
        state.sync_calls[client] += 1
        if config.hold_syncs < 0 or (config.hold_client and client != config.hold_client) \
                or state.sync_calls[client] <= config.hold_syncs or state.released.is_set():
            return
        state.held += 1
        try:
            await state.released.wait()
        finally:
            state.held -= 1

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

    async def release(self, request: web.Request) -> web.Response:
        """Answer the held sync calls, and hold no more (--hold-syncs)."""
        self.state.released.set()
        return web.json_response({"released": self.state.held})

    async def expire(self, request: web.Request) -> web.Response:
        """Age every token issued so far past its lifetime: a test sees expiry without waiting for it."""
        past = time.monotonic() - self.config.scaled(self.config.token_lifetime) - 1
        self.state.tokens = {token: (email, past) for token, (email, _) in self.state.tokens.items()}
        self.state.last_issued = past  # quirks: the one clock
        return web.json_response({"expired": len(self.state.tokens)})

    async def outage(self, request: web.Request) -> web.Response:
        """Answer every call with a 503 for ``seconds`` (real seconds, unscaled; 0 ends an outage)."""
        self.state.down_until = time.monotonic() + float(request.query.get("seconds", "0"))
        return web.json_response({"down_for": float(request.query.get("seconds", "0"))})

    async def set_campaigns(self, request: web.Request) -> web.Response:
        """Serve the first ``count`` campaigns per client from now on: the others were deleted at the
        source (a later, larger count brings them back)."""
        self.config.campaigns = int(request.query["count"])
        return web.json_response({"campaigns": self.config.campaigns})

    async def revoke(self, request: web.Request) -> web.Response:
        """Revoke every token issued so far, as a platform does on a credential rotation."""
        self.state.revoked.update(self.state.tokens)
        return web.json_response({"revoked": len(self.state.revoked)})

    async def show_config(self, request: web.Request) -> web.Response:
        shown = dict(vars(self.config))
        shown["accounts"] = sorted(self.config.accounts)  # emails only, never passwords
        return web.json_response(shown)
