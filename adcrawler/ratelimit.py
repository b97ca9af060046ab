"""Rolling-window request budget for one client (pure logic, injected clock).

The platform admits ``limit`` requests per rolling ``window`` seconds per client
and counts a request when it arrives. We cannot see arrival times, so a request
holds its place in the budget from the moment it is admitted until ``window``
seconds after it *finished*: its arrival lies somewhere in between, so the
platform's window can never hold more of our requests than ours does. The price
is one request latency per window, a few percent with the platform's 2 s sync
calls against a 60 s window, and in exchange no clock skew, queueing delay or
network latency can cause a 429.

If a 429 arrives anyway, our idea of the limit was wrong (a smaller real limit,
another process spending the same client's budget): the client pauses for what
the platform asked, and its limit is cut by a quarter, at most once per window,
for the rest of the run. A budget set twice too high thus costs a few bursts of
429s, not one per request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class RollingWindowBudget:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if window <= 0:
            raise ValueError("window must be > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.in_flight = 0
        self._finished: deque[float] = deque()  # finish times, oldest first
        self._paused_until = 0.0
        self._last_cut = -math.inf

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0] + self.window <= now:
            self._finished.popleft()

    def wait_time(self) -> float:
        """Seconds until one more request may be sent: 0 = now, ``math.inf`` =
        not before a request in flight finishes (call :meth:`release` then)."""
        now = self.clock()
        self._expire(now)
        wait = max(0.0, self._paused_until - now)
        if self.in_flight + len(self._finished) < self.limit:
            return wait
        if not self._finished:
            # Every place is held by a request still in flight: a place frees
            # only ``window`` after one of them finishes.
            return math.inf
        return max(wait, self._finished[0] + self.window - now)

    def acquire(self) -> None:
        """Record that a request is being sent now (call only when ``wait_time()`` is 0)."""
        self.in_flight += 1

    def release(self) -> None:
        """Record that a request admitted by ``acquire`` has finished (any outcome)."""
        self.in_flight = max(0, self.in_flight - 1)
        self._finished.append(self.clock())

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds``."""
        self._paused_until = max(self._paused_until, self.clock() + seconds)

    def rate_limited(self, pause: float) -> bool:
        """The platform answered 429: pause, and lower the limit (True if it was lowered)."""
        self.pause(pause)
        now = self.clock()
        if self.limit == 1 or now < self._last_cut + self.window:
            return False  # one cut per window: a burst of 429s is one piece of news
        self.limit = max(1, min(self.limit - 1, math.ceil(self.limit * 0.75)))
        self._last_cut = now
        return True

    @property
    def used(self) -> int:
        self._expire(self.clock())
        return self.in_flight + len(self._finished)


def lower_bound_seconds(requests: int, limit: int, window: float, last_latency: float = 0.0) -> float:
    """Least wall time the platform's budget allows for ``requests`` requests of
    one client: ``limit`` go at once, each later group of ``limit`` waits a
    window, and the last one still takes ``last_latency`` to answer."""
    if requests <= 0:
        return 0.0
    return (-(-requests // limit) - 1) * window + last_latency
