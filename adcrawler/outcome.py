"""A client's outcome, and the reasons behind it: the one place that decides (pure logic).

- ``succeeded``: every campaign the platform announced was listed, synced and
  stored; nothing quarantined, spooled or left out;
- ``partial``: anything between, with reasons a person can act on
  (``2 quarantined, 1 sync failed, 3 of 100 announced campaigns never listed``);
- ``failed``: nothing usable: the credentials were refused, the token endpoint
  never answered, or the list could not be read at all;
- ``skipped``: another run holds the client's lock; that run does the work.

The spider records each client's outcome in the stats when the crawl closes;
the run records, the metrics, the exit status and the last log line all read it
from there. Data-quality flags never make an outcome partial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SUCCEEDED, PARTIAL, FAILED, SKIPPED = "succeeded", "partial", "failed", "skipped"
OUTCOMES = (SUCCEEDED, PARTIAL, FAILED, SKIPPED)


@dataclass(frozen=True)
class Outcome:
    name: str
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.reasons)})" if self.reasons else self.name


def client_outcome(get: Callable[[str], Any], stopped_early: bool) -> Outcome:
    """Decide from the client's stats (``get(name)``, 0 when absent).
    ``stopped_early``: the crawl did not run to its end (SIGTERM, a fatal error)."""
    if get("locked"):
        return Outcome(SKIPPED, ("another run is syncing this client",))
    if get("auth_failed"):
        return Outcome(FAILED, (str(get("auth_failure") or "could not authenticate"),))
    seen, expected = get("campaigns_seen"), get("campaigns_expected")
    if not seen and (get("list_failed") or stopped_early or not get("list_pages")):
        reason = "the campaign list could not be read" if get("list_failed") else "stopped before listing"
        return Outcome(FAILED, (reason,))
    reasons = []
    counts = (
        ("campaigns_quarantined", "{} quarantined"),
        ("campaigns_sync_failed", "{} sync failed"),
        ("campaigns_not_attempted", "{} not synced before the crawl stopped"),
        ("rows_spooled", "{} rows waiting in the spool (database unreachable)"),
        ("list_failed", "{} list page(s) unreadable"),
    )
    for name, text in counts:
        if get(name):
            reasons.append(text.format(get(name)))
    if expected and seen < expected:
        reasons.append(f"{expected - seen} of {expected} announced campaigns never listed")
    stored_or_kept = get("campaigns_stored") + get("campaigns_quarantined") + get("campaigns_resumed")
    unstored = seen - stored_or_kept - get("campaigns_not_attempted") - get("rows_spooled")
    if unstored > 0:
        reasons.append(f"{unstored} not stored")
    if stopped_early and not reasons:
        reasons.append("the crawl stopped early")
    return Outcome(PARTIAL if reasons else SUCCEEDED, tuple(reasons))


def final_line(outcomes: Mapping[str, Outcome], finish_reason: str) -> tuple[bool, str]:
    """(complete, the last line a person reads) for a run's outcomes."""
    incomplete = {c: o for c, o in outcomes.items() if o.name not in (SUCCEEDED, SKIPPED)}
    skipped = sorted(c for c, o in outcomes.items() if o.name == SKIPPED)
    if finish_reason not in ("finished", "auth_failed") or not outcomes:
        head = f"the crawl ended with reason {finish_reason!r}"
        parts = [head, *(f"{c}: {o.describe()}" for c, o in sorted(incomplete.items()))]
        return False, "Sync incomplete: " + "; ".join(parts)
    if incomplete:
        return False, "Sync incomplete: " + "; ".join(f"{c}: {o.describe()}" for c, o in sorted(incomplete.items()))
    done = len(outcomes) - len(skipped)
    tail = f"; skipped (another run holds them): {', '.join(skipped)}" if skipped else ""
    return True, f"Sync complete: {done} client(s) succeeded{tail}"
