"""When to try again: Retry-After parsing and capped exponential backoff (pure logic)."""

from __future__ import annotations

import math
import random
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any


def parse_retry_after(header: str | bytes | None, body: Any, now: float, cap: float) -> float | None:
    """Seconds the platform asked us to wait, or None when it did not say.

    The header may hold seconds or an HTTP date; the JSON body may hold
    ``retry_after`` in seconds. The header wins when both are usable. Values are
    clamped to ``[0, cap]``; garbage (negative, NaN, unparsable) counts as absent.
    ``now`` is the current Unix time, for HTTP dates.
    """
    if isinstance(header, bytes):
        header = header.decode("latin-1", "replace")
    for candidate in (_from_header(header, now), _from_body(body)):
        if candidate is not None:
            return min(candidate, cap)
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds  # inf is clamped by the caller


def _from_header(header: str | None, now: float) -> float | None:
    if not header or not header.strip():
        return None
    seconds = _seconds(header.strip())
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(header.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _from_body(body: Any) -> float | None:
    if isinstance(body, dict):
        return _seconds(body.get("retry_after"))
    return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(cap, base * 2**(attempt-1)).

    Jitter spreads the retries of many requests that failed together, so they do
    not return as one burst.
    """
    rng = rng or random
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return rng.uniform(ceiling / 2, ceiling)
