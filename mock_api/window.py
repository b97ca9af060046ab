"""The simulator's rate limit: a rolling window per client (or per account), a limit that may change (pure).

A request is counted when it arrives. ``schedule`` changes the limit at given
times (seconds since the start); a new limit applies to the requests that
arrive after the change, those before are not held against it: after a drop
from 10 to 5 the platform admits 5 more in the window whatever it held, so a
client that reads the new policy from its next answer meets no 429, one that
does not meets one. The same rules give the bench its ideal (:func:`ideal_sends`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence


class Window:
    def __init__(self, limit: int, window: float, schedule: Sequence[tuple[float, int]] = (), start: float = 0.0):
        self.window = window
        # (from time, limit), in order; the first holds from the start.
        self.steps = [(start, limit), *sorted((start + at, lim) for at, lim in schedule)]
        self.arrivals: deque[float] = deque()

    def _step(self, now: float) -> int:
        return bisect.bisect_right([at for at, _ in self.steps], now) - 1

    def limits(self, now: float) -> tuple[int, int, float]:
        """(limit now, the most the window may hold now, when the limit last changed)."""
        i = self._step(now)
        changed, limit = self.steps[i]
        previous = self.steps[i - 1][1] if i > 0 else limit
        return limit, max(limit, previous), changed

    def _expire(self, now: float) -> None:
        while self.arrivals and self.arrivals[0] <= now - self.window:
            self.arrivals.popleft()

    def remaining(self, now: float) -> int:
        self._expire(now)
        limit, most, changed = self.limits(now)
        since = sum(1 for t in self.arrivals if t >= changed)
        return max(0, min(most - len(self.arrivals), limit - since))

    def admit(self, now: float) -> bool:
        if self.remaining(now) == 0:
            return False
        self.arrivals.append(now)
        return True

    def reset(self, now: float) -> float:
        """Seconds until one more request would be admitted (0 when one would be now)."""
        if self.remaining(now):
            return 0.0
        limit, most, changed = self.limits(now)
        waits = []
        since = [t for t in self.arrivals if t >= changed]
        if len(since) >= limit:
            waits.append(since[len(since) - limit] + self.window - now)
        if len(self.arrivals) >= most:
            waits.append(self.arrivals[len(self.arrivals) - most] + self.window - now)
        nxt = self._step(now) + 1  # or the next change of limit, if sooner and higher
        if nxt < len(self.steps) and self.steps[nxt][1] > limit:
            waits.append(self.steps[nxt][0] - now)
        return max(0.0, min(waits)) if waits else 0.0


def ideal_sends(requests: int, limit: int, window: float, schedule: Sequence[tuple[float, int]] = ()) -> list[float]:
    """When a client that knew every rule would send ``requests`` requests, as early as the platform admits them."""
    platform = Window(limit, window, schedule)
    sends, now = [], 0.0
    while len(sends) < requests:
        if platform.admit(now):
            sends.append(now)
            continue
        wait = platform.reset(now)
        now += wait if wait > 0 else 1e-9
        if math.isinf(now):
            raise ValueError("the platform never admits another request")
    return sends
