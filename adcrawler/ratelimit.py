"""Rolling-window request budget for one client, or for clients sharing one (pure logic, injected clock).

The platform admits ``limit`` requests per rolling ``window`` seconds and
counts a request when it arrives. Until it says more, we cannot see arrival
times, so a request holds its place from the moment it is admitted until
``window`` seconds after it *finished*: its arrival lies somewhere in between,
so the platform's window can never hold more of our requests than ours does.
The price is one request latency per window, a few percent with 2 s sync calls
against a 60 s window; in exchange no clock skew, queueing delay or network
latency can cause a 429.

When the platform states its limits (:mod:`adcrawler.ratesignals`), the budget
follows what it says (:meth:`observe`):

- its policies replace the configured one: a lower limit at once, a higher one
  up to ``ceiling`` (per the configured window, scaled to the policy's); every
  policy holds (50 per minute *and* 1,000 per hour);
- a place is held from the moment the request is sent (plus a margin of 1 % of
  the window), not from its answer: the platform's counts confirm ours, so the
  next request goes when the window frees, not one latency later;
- sends are spaced by a little more than a typical answer's latency
  (:attr:`spacing`), so an answer, and the limit it states, comes back between
  two sends: a limit lowered mid-run is read before the next request, not
  after a burst of them. Only the last, partial window of a run pays for it
  (up to one latency per request in it). Without signals, bursts are kept:
  spacing would cost every run that much (bench a: 1.075 against 1.057 x the
  bound, same seeds) to save the second 429 of an unannounced drop;
- what the last answer says remains is not exceeded before a newer answer or
  its reset (clients of one account learn late that they share a budget, and
  the platform counts the others' requests too); remaining 0 with a reset:
  nothing is sent before the reset; ``Retry-After`` likewise.

A 429 means our idea of the limit was wrong. The client pauses for what the
platform asked. Without signals the limit is halved (at most once per window)
and probed back up after ``probe_windows`` quiet windows, half the way to the
configured limit each time; a probe that meets a 429 returns to the last limit
that held and waits twice as long before the next, so a temporary squeeze does
not cost the rest of the run and a lasting one costs a 429 per ever rarer
probe. With signals the limit is the platform's: a 429 widens the margin
instead (a platform whose resets come a little early).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from adcrawler.ratesignals import Signals

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
                    wait = max(wait, held[len(held) - limit] + window + self.margin - now)
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
        """Record that a request of ``client`` admitted by ``acquire`` has finished (any outcome),
        after ``latency`` seconds."""
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
        typical = sorted(self._latencies)[len(self._latencies) // 2]
        return min(1.25 * typical, min(w / n for n, w in self.policies))

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds``."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def take(self, client: str) -> "Places":
        """Remove and return ``client``'s own places: it draws from another budget from now on.
        The other clients' places stay."""
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
        if signals.said:
            self.told = True
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
