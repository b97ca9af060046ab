"""A client's rate budget, and what a platform says of its limits (pure logic, injected clock).

Until the platform says more, a request holds its place from its send until a window after its answer
(the platform counts it somewhere between); what its headers say (IETF RateLimit, the older drafts',
the vendors' X-RateLimit and Shopify's, Retry-After) is followed, every stated time bounded by one cap."""

from __future__ import annotations

import base64
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from statistics import median_high
from typing import Any

import http_sfv


def _seconds(value: Any) -> float | None:
    """A number of seconds >= 0 (inf is capped by the caller), or None for anything else."""
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None  # NaN compares false


def parse_retry_after(header: str | bytes | None, body: Any, now: float, cap: float) -> float | None:
    """Seconds the platform asked us to wait, at most ``cap``: the Retry-After header (seconds or an
    HTTP date, ``now`` being Unix time), else a JSON body's ``retry_after``; None when neither says."""
    if isinstance(header, bytes):
        header = header.decode("latin-1", "replace")
    wait = _seconds(header)
    if wait is None and header and header.strip():
        try:
            when = parsedate_to_datetime(header.strip())
            wait = max(0.0, when.replace(tzinfo=when.tzinfo or timezone.utc).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            pass
    if wait is None and isinstance(body, dict):
        wait = _seconds(body.get("retry_after"))
    return None if wait is None else min(wait, cap)


@dataclass(frozen=True)
class Signals:
    # The platform's policies: (requests, window in seconds or None for the configured window).
    policies: tuple[tuple[int, float | None], ...] = ()
    remaining: int | None = None
    reset: float | None = None  # seconds from now until (part of) the quota returns
    partition: str | None = None  # the budget this answer speaks of, when the platform names it
    retry_after: float | None = None
    malformed: tuple[str, ...] = ()

    @property
    def said(self) -> bool:
        return bool(self.policies) or self.remaining is not None or self.reset is not None


def read_signals(get: Callable[[str], str | bytes | None], now: float, cap: float = math.inf,
                 least: float = 0.0) -> Signals:
    """The signals of one answer; ``get(name)`` returns a header's value or None; ``now``: Unix time
    (epoch resets, HTTP dates); ``cap``: the longest time believed (a window, a reset, a
    Retry-After); ``least``: the shortest window believed (a shorter one is malformed)."""
    malformed: list[str] = []

    def text(name: str) -> str | None:
        value = get(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value

    found = (_ietf(text("RateLimit-Policy"), text("RateLimit"), malformed, cap, least)
             or _older("RateLimit-", text, now, malformed) or _older("X-RateLimit-", text, now, malformed)
             or _shopify(text("X-Shopify-Shop-Api-Call-Limit"), malformed))
    retry_after = text("Retry-After")
    if retry_after is not None:
        found["retry_after"] = parse_retry_after(retry_after, None, now, cap)
        if found["retry_after"] is None:
            malformed.append("Retry-After")
    if isinstance(found.get("reset"), float):
        found["reset"] = min(max(0.0, found["reset"]), cap)
    return Signals(**found, malformed=tuple(malformed))


def _number(value: object) -> float | None:
    """A non-negative number of a Structured Field: an Integer, or a Decimal (``w=0.6``)."""
    return _seconds(value) if isinstance(value, (int, float, Decimal)) else None


def _items(header: str | None, name: str, malformed: list[str]) -> list[Any]:
    """The members of a Structured Field list (RFC 9651), or none when it cannot be read."""
    if header is None:
        return []
    items = http_sfv.List()
    try:
        items.parse(header.encode("latin-1"))
    except ValueError:
        malformed.append(name)
        return []
    return list(items)


def _ietf(policy: str | None, state: str | None, malformed: list[str], cap: float,
          least: float) -> dict[str, Any]:
    """draft-ietf-httpapi-ratelimit-headers: every policy (``q`` per ``w``, ``pk``), and of the
    states (``r`` remaining, ``t`` until a reset) the one closest to running out."""
    policies, partitions = [], set()
    for item in _items(policy, "RateLimit-Policy", malformed):
        quota, window, pk = _number(item.params.get("q")), _number(item.params.get("w")), item.params.get("pk")
        if not quota or (window is not None and window < max(least, 1e-9)):  # q=0, or w too short to mean it
            malformed.append("RateLimit-Policy")
            policies, partitions = [], set()
            break
        if window is not None and window > cap:  # the same rate over the longest time believed
            quota, window = max(1.0, math.floor(quota * cap / window)), cap
        policies.append((int(quota), window))
        if isinstance(pk, bytes):
            partitions.add(base64.b64encode(pk).decode())
    states = []
    for item in _items(state, "RateLimit", malformed):
        remaining = _number(item.params.get("r"))
        if remaining is None:  # r is required
            malformed.append("RateLimit")
            states = []
            break
        states.append((int(remaining), _number(item.params.get("t"))))
    found: dict[str, Any] = {"policies": tuple(policies)} if policies else {}
    if len(partitions) == 1:
        found["partition"] = partitions.pop()
    if states:
        found["remaining"], reset = min(states, key=lambda s: s[0])
        if reset is not None:
            found["reset"] = reset
    return found


def _older(prefix: str, text: Callable[[str], str | None], now: float, malformed: list[str]) -> dict[str, Any]:
    """The earlier drafts' ``RateLimit-*`` and the vendors' ``X-RateLimit-*``: a limit of the
    configured window, what remains, and a reset told apart by magnitude."""
    found: dict[str, Any] = {}
    for part in ("Limit", "Remaining", "Reset"):
        raw = text(prefix + part)
        if raw is None:
            continue
        # A limit may carry the earlier drafts' policies after a comma ("100, 100;w=60").
        number = _seconds(raw.split(",")[0].strip())
        if number is None or math.isinf(number):
            malformed.append(prefix + part)
        elif part == "Reset":
            found["reset"] = reset_delta(number, now)
        elif part == "Limit":
            found["policies"] = ((int(number), None),)
        else:
            found["remaining"] = int(number)
    return found


def _shopify(header: str | None, malformed: list[str]) -> dict[str, Any]:
    """Shopify's ``X-Shopify-Shop-Api-Call-Limit: used/capacity`` (a leaky bucket, read per the
    configured window): capacity is the limit, and what is not used remains."""
    if header is None:
        return {}
    used, _, capacity = header.partition("/")
    if not (used.strip().isdigit() and capacity.strip().isdigit() and int(capacity) > 0):
        malformed.append("X-Shopify-Shop-Api-Call-Limit")
        return {}
    return {"policies": ((int(capacity), None),), "remaining": max(0, int(capacity) - int(used))}


def reset_delta(value: float, now: float) -> float:
    """Seconds from ``now`` until a reset given as a delta, epoch seconds (GitHub, X: >= 1e9) or
    epoch milliseconds (>= 1e12)."""
    if value >= 1e12:
        return value / 1000.0 - now
    return value - now if value >= 1e9 else value


@dataclass(frozen=True)
class Places:
    """What one client holds in a budget: requests in flight, and the times of its sends and finishes."""

    client: str
    in_flight: int
    sent: list[float]
    finished: list[float]


MARGIN = 0.01  # of the window: the least a place is held past its request's send when the platform tells


class RollingWindowBudget:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 ceiling: int | None = None, probe_windows: float = 10.0):
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if window <= 0:
            raise ValueError("window must be > 0")
        self.configured = (limit, window)
        self.limit = limit
        self.window = window
        self.ceiling = max(limit, ceiling or limit)  # per configured window
        self.policies: tuple[tuple[int, float], ...] = ((limit, window),)
        self.clock = clock
        self.flying: dict[str, int] = {}  # requests in flight, per client drawing from this budget
        self.told = False  # the platform states its limits: places are held from the send
        self.margin = MARGIN * window
        # (time, client) of each finish and send, oldest first: a client that moves to
        # another budget takes its own with it (see take and give).
        self._finished: deque[tuple[float, str]] = deque()
        self._sent: deque[tuple[float, str]] = deque()
        self._latencies: deque[float] = deque(maxlen=9)  # of the last answers, for the spacing
        self._paused_until = 0.0
        # What the last answer said is left, the sends since, and until when it holds.
        self._remaining: int | None = None
        self._spent = 0
        self._remaining_until = 0.0
        self._last_cut = -math.inf
        self._last_probe = -math.inf
        self._good = limit  # the last limit that held, while probing above it
        self._probe_every = probe_windows

    # -- places -----------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(self.flying.values())

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0][0] + self.window <= now:
            self._finished.popleft()
        longest = max(w for _, w in self.policies) + self.margin
        while self._sent and self._sent[0][0] + longest <= now:
            self._sent.popleft()

    def wait_time(self) -> float:
        """Seconds until one more request may be sent: 0 = now, ``math.inf`` =
        not before a request in flight finishes (call :meth:`release` then)."""
        now = self.clock()
        self._probe(now)
        self._expire(now)
        wait = max(0.0, self._paused_until - now)
        if self._sent and self.told:
            wait = max(wait, self._sent[-1][0] + self.spacing - now)
        if self.told:
            if self._remaining is not None and self._spent >= self._remaining:
                # Past what the platform said remains, each request waits for news: an answer
                # still to come, or (nothing in flight) the reset; then one goes and asks.
                if self.in_flight:
                    return math.inf
                if now < self._remaining_until < math.inf:
                    wait = max(wait, self._remaining_until - now)
            for limit, window in self.policies:
                held = [t for t, _ in self._sent if t + window + self.margin > now]
                if len(held) >= limit:  # the oldest places free first
                    wait = max(wait, held[-limit] + window + self.margin - now)
            return wait
        if self.in_flight + len(self._finished) < self.limit:
            return wait
        if not self._finished:
            # Every place is held by a request still in flight: a place frees
            # only ``window`` after one of them finishes.
            return math.inf
        return max(wait, self._finished[0][0] + self.window - now)

    def acquire(self, client: str = "") -> None:
        """Record that a request of ``client`` is being sent now (call only when ``wait_time()`` is 0)."""
        self.flying[client] = self.flying.get(client, 0) + 1
        self._spent += 1
        self._sent.append((self.clock(), client))

    def release(self, latency: float | None = None, client: str = "") -> None:
        """A request of ``client`` admitted by ``acquire`` finished (any outcome) after ``latency`` seconds."""
        if self.flying.get(client):
            self.flying[client] -= 1
        self._finished.append((self.clock(), client))
        if latency is not None:
            self._latencies.append(latency)

    @property
    def spacing(self) -> float:
        """Least time between two sends: a quarter more than a typical answer takes (never more than
        window / limit), so an answer, and what it says of the limit, comes back before the next send
        and a limit that drops mid-run costs one request at most, not a burst."""
        if not self._latencies:
            return 0.0
        return min(1.25 * median_high(self._latencies), min(w / n for n, w in self.policies))

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def take(self, client: str) -> "Places":
        """Remove and return ``client``'s own places (it moves to another budget); the others' stay."""
        places = Places(client, self.flying.pop(client, 0), [t for t, c in self._sent if c == client],
                        [t for t, c in self._finished if c == client])
        self._sent = deque(e for e in self._sent if e[1] != client)
        self._finished = deque(e for e in self._finished if e[1] != client)
        return places

    def give(self, places: "Places") -> None:
        """Hold the places a client brings from the budget it left."""
        if places.in_flight:
            self.flying[places.client] = self.flying.get(places.client, 0) + places.in_flight
        self._sent = deque(sorted((*self._sent, *((t, places.client) for t in places.sent))))
        self._finished = deque(sorted((*self._finished, *((t, places.client) for t in places.finished))))

    # -- what the platform says -------------------------------------------------
    def observe(self, signals: Signals) -> bool:
        """Follow an answer's rate-limit signals; True when the limit in force changed."""
        before = (self.limit, self.window)
        self.told = self.told or signals.said
        policies = []
        for limit, window in signals.policies:
            window = window or self.configured[1]
            ceiling = max(1, math.floor(self.ceiling * window / self.configured[1]))
            policies.append((max(1, min(limit, ceiling)), window))
        if policies:
            self.policies = tuple(policies)
            # Reported as the limit in force: the lowest rate of them.
            self.limit, self.window = min(policies, key=lambda p: p[0] / p[1])
            self._good = self.limit
        if signals.remaining is not None:
            # No more than that many before a newer answer or the reset; the requests
            # still in flight (besides the one answered) may not be counted in it yet.
            self._remaining = max(0, signals.remaining - max(0, self.in_flight - 1))
            self._spent = 0
            # Until its reset, or (without one) until a newer answer.
            self._remaining_until = math.inf if signals.reset is None else self.clock() + signals.reset
        if signals.remaining == 0 and signals.reset is not None:
            self.pause(signals.reset)  # nothing before the reset
        if signals.retry_after is not None:
            self.pause(signals.retry_after)
        return (self.limit, self.window) != before

    def rate_limited(self, pause: float) -> bool:
        """The platform answered 429: pause, and lower the limit (True if it was lowered)."""
        self.pause(pause)
        now = self.clock()
        if now < self._last_cut + self.window:
            return False  # one cut per window: a burst of 429s is one piece of news
        self._last_cut = now
        if self.told:  # the platform's limit is known: its resets come later than it says
            self.margin = min(self.window / 10, self.margin * 2)
            return False
        if self.limit > self._good:  # a probe too far: back to what held, probe half as often
            self.limit = self._good
            self._probe_every *= 2
        else:
            self.limit = self._good = max(1, self.limit // 2)
        self.policies = ((self.limit, self.window),)
        return True

    def _probe(self, now: float) -> None:
        """Without signals, a lowered limit creeps back up once enough quiet windows passed."""
        target = self.configured[0]
        quiet_since = max(self._last_cut, self._last_probe)
        if self.told or self.limit >= target or now < quiet_since + self._probe_every * self.window:
            return
        if self.limit > self._good:  # the last probe held
            self._good = self.limit
        self.limit = min(target, self.limit + max(1, (target - self.limit + 1) // 2))
        self.policies = ((self.limit, self.window),)
        self._last_probe = now


def lower_bound_seconds(requests: int, limit: int, window: float, last_latency: float = 0.0) -> float:
    """Least wall time the platform's budget allows for ``requests`` requests of
    one client: ``limit`` go at once, each later group of ``limit`` waits a
    window, and the last one still takes ``last_latency`` to answer."""
    if requests <= 0:
        return 0.0
    return (-(-requests // limit) - 1) * window + last_latency
