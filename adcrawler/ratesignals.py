"""What a platform says about its rate limit, read from an answer's headers (pure logic).

Read, tolerantly (a field that cannot be read is ignored and named in
``malformed``, never fatal; fields need not come on every answer):

- ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-11):
  Structured Field lists, parsed with ``http_sfv``; a policy item carries ``q``
  (quota), ``w`` (window, seconds) and ``pk`` (partition key), a ``RateLimit``
  item ``r`` (remaining) and ``t`` (seconds until the quota may reset: a delta,
  never an epoch). Every policy is kept (the budget holds them all); of several
  ``RateLimit`` items, the one with the least remaining says when to wait;
- the earlier drafts' ``RateLimit-Limit``, ``-Remaining``, ``-Reset`` and the
  vendors' ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``. Their limit has no
  window: it is read per the configured window. Their reset is a delta, epoch
  seconds (GitHub, X) or epoch milliseconds depending on the vendor; it is told
  apart by magnitude: >= 10^12 is epoch milliseconds, >= 10^9 epoch seconds,
  anything smaller a delta in seconds;
- ``Retry-After`` on any status: seconds or an HTTP date (it wins over a reset).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import http_sfv

from adcrawler.backoff import parse_retry_after

EPOCH_MS, EPOCH_S = 1e12, 1e9


@dataclass(frozen=True)
class Signals:
    # The platform's policies: (requests, window in seconds or None for the configured window).
    policies: tuple[tuple[int, float | None], ...] = ()
    remaining: int | None = None
    reset: float | None = None  # seconds from now until (part of) the quota returns
    partition: str | None = None  # the budget this answer speaks of, when the platform names it
    retry_after: float | None = None
    malformed: tuple[str, ...] = field(default=())

    @property
    def said(self) -> bool:
        return bool(self.policies) or self.remaining is not None or self.reset is not None


def read_signals(get: Callable[[str], str | bytes | None], now: float, cap: float = math.inf,
                 least: float = 0.0) -> Signals:
    """The signals of one answer; ``get(name)`` returns a header's value or None; ``now``:
    Unix time (epoch resets, HTTP dates); ``cap``: the longest time believed (a window, a
    reset, a Retry-After); ``least``: the shortest window believed (a shorter one is malformed)."""
    malformed: list[str] = []
    found: dict[str, object] = {}

    def text(name: str) -> str | None:
        value = get(name)
        if value is None:
            return None
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    ietf = _ietf(text("RateLimit-Policy"), text("RateLimit"), malformed, cap, least)
    if ietf:
        found.update(ietf)
    else:
        for prefix in ("RateLimit-", "X-RateLimit-"):
            older = _older(prefix, text, now, malformed)
            if older:
                found.update(older)
                break
    retry_after = text("Retry-After")
    if retry_after is not None:
        wait = parse_retry_after(retry_after, None, now, cap)
        if wait is None:
            malformed.append("Retry-After")
        found["retry_after"] = wait
    if isinstance(found.get("reset"), float):
        found["reset"] = min(max(0.0, found["reset"]), cap)
    return Signals(**found, malformed=tuple(malformed))


def _number(value: object) -> float | None:
    """A non-negative number of a Structured Field: an Integer, or a Decimal (``w=0.6``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _ietf(policy: str | None, state: str | None, malformed: list[str], cap: float,
          least: float) -> dict[str, object]:
    policies: dict[str, dict] = {}
    if policy is not None:  # name -> {limit, window, partition}
        try:
            items = http_sfv.List()
            items.parse(policy.encode("latin-1"))
            for item in items:
                quota, window = _number(item.params.get("q")), _number(item.params.get("w"))
                if not quota or (window is not None and window < max(least, 1e-9)):
                    raise ValueError("q is required and > 0; w is at least the least useful interval")
                if window is not None and window > cap:  # the same rate over the longest time believed
                    quota, window = max(1.0, math.floor(quota * cap / window)), cap
                pk = item.params.get("pk")
                policies[str(item.value)] = {"limit": int(quota), "window": window, "partition": (
                    base64.b64encode(pk).decode() if isinstance(pk, bytes) else None)}
        except (ValueError, TypeError, AttributeError):
            malformed.append("RateLimit-Policy")
            policies = {}
    states: dict[str, dict] = {}
    if state is not None:
        try:
            items = http_sfv.List()
            items.parse(state.encode("latin-1"))
            for item in items:
                remaining, reset = _number(item.params.get("r")), _number(item.params.get("t"))
                if remaining is None:
                    raise ValueError("r is required")
                states[str(item.value)] = {"remaining": int(remaining), "reset": reset}
        except (ValueError, TypeError, AttributeError):
            malformed.append("RateLimit")
            states = {}
    if not policies and not states:
        return {}
    found: dict[str, object] = {}
    if policies:
        found["policies"] = tuple((p["limit"], p["window"]) for p in policies.values())
        partitions = {p["partition"] for p in policies.values()} - {None}
        if len(partitions) == 1:
            found["partition"] = partitions.pop()
    if states:  # when to wait: the policy closest to running out
        name = min(states, key=lambda n: states[n]["remaining"])
        found["remaining"] = states[name]["remaining"]
        if states[name]["reset"] is not None:
            found["reset"] = states[name]["reset"]
    return found


def _older(prefix: str, text: Callable[[str], str | None], now: float, malformed: list[str]) -> dict[str, object]:
    found: dict[str, object] = {}
    for part, name in (("Limit", "limit"), ("Remaining", "remaining"), ("Reset", "reset")):
        raw = text(prefix + part)
        if raw is None:
            continue
        try:  # a limit may carry the earlier drafts' policies after a comma ("100, 100;w=60")
            number = float(raw.split(",")[0].strip())
            if not math.isfinite(number) or number < 0:
                raise ValueError
        except ValueError:
            malformed.append(prefix + part)
            continue
        found[name] = reset_delta(number, now) if name == "reset" else int(number)
    if "limit" in found:
        found["policies"] = ((found.pop("limit"), None),)
    return found


def reset_delta(value: float, now: float) -> float:
    """Seconds from ``now`` until a reset given as a delta, epoch seconds or epoch milliseconds."""
    if value >= EPOCH_MS:
        return value / 1000.0 - now
    if value >= EPOCH_S:
        return value - now
    return value
