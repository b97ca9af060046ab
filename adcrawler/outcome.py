"""A client's outcome, and the reasons behind it: the one place that decides (pure logic).

- ``succeeded``: every campaign the platform announced was listed, synced and
  stored; nothing newly quarantined, spooled or left out (a record quarantined
  again for the reason an earlier run gave is counted, not alerted on, unless
  ``ADCRAWLER_QUARANTINE_ALERT=every``);
- ``partial``: anything between, with reasons a person can act on
  (``2 quarantined, 1 sync failed, 3 of 100 announced campaigns never listed``);
- ``failed``: nothing usable: the credentials were refused, the token endpoint
  never answered, or the list could not be read at all;
- ``skipped``: another run holds the client's lock; that run does the work;
- ``interrupted``: the run stopped working for the client midway (its lock
  was lost, or the rows had nowhere to go), with the reason.

The run ledger settles each client's outcome from its state when the crawl
closes (and again if the run then fails to record it); the run records, the
metrics, the exit status and the last log line all take it from the ledger.
Data-quality flags never make an outcome partial; a run record or a metrics
push that could not be written does (``faults``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adcrawler.ledger import ClientRun

SUCCEEDED, PARTIAL, FAILED, SKIPPED, INTERRUPTED = "succeeded", "partial", "failed", "skipped", "interrupted"
OUTCOMES = (SUCCEEDED, PARTIAL, FAILED, SKIPPED, INTERRUPTED)
SPOOLED = "rows waiting in the spool"  # followed by the cause: "(lock timeout)", "(disk)"...


@dataclass(frozen=True)
class Outcome:
    name: str
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.reasons)})" if self.reasons else self.name


def client_outcome(run: ClientRun, stopped_early: bool) -> Outcome:
    """Decide from the client's run in the ledger. ``stopped_early``: the crawl
    did not run to its end (SIGTERM, a fatal error)."""
    if run.state == "skipped":
        return Outcome(SKIPPED, ("another run is syncing this client",))
    if run.state == "interrupted":
        return Outcome(INTERRUPTED, (str(run.interruption), *run.faults))
    if run.auth_failure:
        return Outcome(FAILED, (run.auth_failure, *run.faults))
    seen, expected = run.seen, run.listing.total
    if not seen and (run.list_failed or stopped_early or not run.listing.pages):
        reason = "the campaign list could not be read" if run.list_failed else "stopped before listing"
        return Outcome(FAILED, (reason, *run.faults))
    counts = (
        (run.quarantined - run.quarantined_again, "{} quarantined"),
        (len(run.failed), "{} sync failed"),
        (run.not_attempted, "{} not synced before the crawl stopped"),
        *((count, f"{{}} {SPOOLED} ({cause})") for cause, count in sorted(run.spooled.items())),
        (run.list_failed, "{} list page(s) unreadable"),
    )
    reasons = [text.format(count) for count, text in counts if count]
    if expected and seen < expected:
        reasons.append(f"{expected - seen} of {expected} announced campaigns never listed")
    if run.listing.truncated:
        reasons.append(f"listing {run.listing.stop_reason}")
    unstored = seen - len(run.stored) - run.quarantined - run.resumed - run.not_attempted - sum(run.spooled.values())
    if unstored > 0:
        reasons.append(f"{unstored} not stored")
    reasons.extend(run.faults)
    if stopped_early and not reasons:
        reasons.append("the crawl stopped early")
    return Outcome(PARTIAL if reasons else SUCCEEDED, tuple(reasons))


def dry_run_outcome(run: ClientRun, stopped_early: bool) -> Outcome:
    """A dry run's outcome: whether the listing could be read, and what the run would have done."""
    if run.state == "skipped":
        return client_outcome(run, stopped_early)
    if run.auth_failure or not run.seen and (run.list_failed or stopped_early or not run.listing.pages):
        return client_outcome(run, stopped_early)
    would = (f"would store {run.would_store}, quarantine {run.quarantined} and sync {len(run.syncable)} "
             f"of {run.seen} listed")
    problems = []
    if run.list_failed:
        problems.append(f"{run.list_failed} list page(s) unreadable")
    expected = run.listing.total
    if expected and run.seen < expected:
        problems.append(f"{expected - run.seen} of {expected} announced campaigns never listed")
    if run.listing.truncated:
        problems.append(f"listing {run.listing.stop_reason}")
    if stopped_early:
        problems.append("the crawl stopped early")
    return Outcome(PARTIAL if problems else SUCCEEDED, (would, *problems))


def after_replay(outcome: str | None, reasons: str | None, unreadable: int = 0) -> tuple[str, str | None]:
    """A run's outcome once a replay stored its spooled rows: the spool is no longer a
    reason, unless ``unreadable`` of its lines could not be read back (kept in quarantine);
    a run that never recorded its end (still ``running``) is closed as interrupted."""
    kept = [r for r in (reasons or "").split(", ") if r and SPOOLED not in r]
    if unreadable:
        kept.append(f"{unreadable} spooled row(s) unreadable, kept in quarantine")
    if outcome in (None, "running"):
        return INTERRUPTED, ", ".join(["the run ended before recording its outcome; its spool was replayed", *kept])
    if outcome == PARTIAL and not kept:
        return SUCCEEDED, None
    return outcome, ", ".join(kept) or None


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
