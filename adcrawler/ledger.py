"""The run ledger: each client's run state and outcome, in one place. Components tell it what
happened through its methods; what it settles is what the record, metrics and exit status say."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler

from adcrawler.budget import lower_bound_seconds
from adcrawler.config import DRY_RUN, scaled, value
from adcrawler.listing import Listing
from adcrawler.logs import shown
from adcrawler.model import MODELLED, Campaign, CampaignItem
from adcrawler.registry import Client
from adcrawler.stats import RunStats
from adcrawler.store.writes import Removals

logger = logging.getLogger(__name__)

# Sent by the recorder once the run holds its clients' locks, with ``job`` (the JobState)
# and ``clients`` (the client ids held).
CLIENTS_HELD = object()


class State(Enum):
    WAITING = "waiting"  # before the recorder takes the client's lock
    HELD = "held"  # this run holds the lock and works for the client
    SKIPPED = "skipped"  # another run holds it
    INTERRUPTED = "interrupted"  # the run stopped working for it midway (its lock lost, nowhere to store)


class Result(StrEnum):
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


SYNC_PASSES = 3  # passes over a client's syncs that failed after all their retries
SPOOLED = "rows waiting in the spool"  # followed by the cause: "(lock timeout)", "(disk)"...


@dataclass(frozen=True)
class Outcome:
    name: Result
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.reasons)})" if self.reasons else str(self.name)


@dataclass
class FailedSync:
    campaign: Campaign | None  # None: a quarantined record, synced for the platform's sake
    fetched_at: datetime
    error: str
    retryable: bool  # worth another pass


@dataclass(frozen=True)
class Progress:
    done: int  # campaigns settled: synced, quarantined without a usable id, or failed for good
    known: int  # campaigns known to exist: listed, or announced while the listing goes on
    retrying: int  # failed syncs waiting for another pass
    listing_done: bool


@dataclass
class ClientRun:
    client: Client
    listing: Listing
    state: State = State.WAITING
    interruption: str | None = None
    started_at: datetime | None = None
    last_answer_at: datetime | None = None
    listing_done: bool = False
    list_failed: int = 0  # list pages given up on
    pending: int = 0  # sync requests not settled yet
    passes: int = 1
    syncable: set[str] = field(default_factory=set)  # usable ids listed
    latest: dict[str, Campaign] = field(default_factory=dict)  # listed again with other contents
    synced: set[str] = field(default_factory=set)
    failed: dict[str, FailedSync] = field(default_factory=dict)
    resumable: set[str] = field(default_factory=set)  # stored as synced by an interrupted attempt of this run
    resumed: int = 0  # listed campaigns skipped because they are resumable
    stored: set[str] = field(default_factory=set)
    would_store: int = 0  # a dry run: valid campaigns it would have stored
    quarantined: int = 0
    # Problems quarantined by earlier runs, and how many quarantines of this run repeat one.
    known_problems: set[str] = field(default_factory=set)
    quarantined_again: int = 0
    spooled: Counter[str] = field(default_factory=Counter)  # rows spooled, by cause
    auth_failure: str | None = None
    unavailable: str | None = None  # the platform failed everything for longer than allowed: since when
    recovered: int = 0  # failed syncs that succeeded in this pass
    removals: Removals | None = None  # what the listing changed in which campaigns are current
    fields_seen: set[str] = field(default_factory=set)  # top-level fields of the records listed
    fields_in_every: set[str] | None = None  # ... and those every record had
    faults: list[str] = field(default_factory=list)  # what kept the run from its work or its record
    requests_sent: int = 0
    last_latency: float = 0.0
    outcome: Outcome | None = None
    recorded: tuple[int, int] | None = None  # (synced, failed) as the run record counts them

    @property
    def seen(self) -> int:
        return self.listing.seen

    @property
    def not_attempted(self) -> int:
        """Listed, syncable, and never synced nor failed: the crawl stopped first."""
        return len(self.syncable - self.synced - self.failed.keys() - self.resumable)

    def progress(self) -> Progress:
        more = self.passes < SYNC_PASSES
        for_good = sum(1 for f in self.failed.values() if not (f.retryable and more))
        done = len(self.synced) + len(self.resumable & self.syncable) + self.seen - len(self.syncable) + for_good
        known = self.seen if self.listing_done else max(self.listing.total or 0, self.seen)
        return Progress(min(done, known), known, len(self.failed) - for_good, self.listing_done)


class RunLedger:
    def __init__(self, stats: RunStats, page_size: int, rate_limit: int, rate_window: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), dry_run: bool = False,
                 max_campaigns: int = 10_000):
        self.stats = stats
        self.dry_run = dry_run
        self.page_size = page_size
        self.max_campaigns = max_campaigns
        self.rate = (rate_limit, rate_window)
        self.clock = clock
        self.runs: dict[str, ClientRun] = {}
        self.finish_reason: str | None = None
        self.notices: list[str] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RunLedger:
        s = crawler.settings
        ledger = cls(RunStats(crawler), value(s, "ADCRAWLER_PAGE_SIZE"), value(s, "ADCRAWLER_RATE_LIMIT"),
                     scaled(s, value(s, "ADCRAWLER_RATE_WINDOW")),
                     dry_run=s.getbool(DRY_RUN), max_campaigns=value(s, "ADCRAWLER_MAX_CAMPAIGNS"))
        crawler.signals.connect(ledger.spider_closed, signal=signals.spider_closed)
        return ledger

    @staticmethod
    def of(crawler: Crawler) -> RunLedger:
        ledger = crawler.get_extension(RunLedger)
        if ledger is None:
            raise RuntimeError("adcrawler.ledger.RunLedger must be enabled in EXTENSIONS")
        return ledger

    # -- the clients of this crawl, and which this run holds ------------------------------
    def open(self, clients: Iterable[Client]) -> None:
        for client in clients:
            run = self.runs[client.client_id] = ClientRun(client, Listing(self.page_size, self.max_campaigns))
            if self.dry_run:  # nothing is recorded, so no lock is taken: the run works for every client
                run.state, run.started_at = State.HELD, self.clock()

    def run(self, client: str) -> ClientRun:
        return self.runs[client]

    def held(self) -> list[str]:
        return [c for c, run in self.runs.items() if run.state is State.HELD]

    def owned(self) -> list[str]:
        return [c for c, run in self.runs.items() if run.state in (State.HELD, State.INTERRUPTED)]

    def reported(self) -> list[str]:
        """Owned, or not started for a reason the run knows (the database down...)."""
        return [c for c, run in self.runs.items()
                if run.state in (State.HELD, State.INTERRUPTED) or (run.state is State.WAITING and run.faults)]

    def may_send(self, client: str) -> bool:
        run = self.runs.get(client)
        return run is None or (run.state is State.HELD and not run.unavailable)

    def starting(self, client: str) -> datetime:
        run = self.runs[client]
        run.started_at = run.started_at or self.clock()
        return run.started_at

    def hold(self, client: str, known_problems: set[str] | None = None) -> None:
        run = self.runs[client]
        run.state, run.known_problems = State.HELD, known_problems or set()
        self.starting(client)

    def skip(self, client: str) -> None:
        self.runs[client].state = State.SKIPPED
        self.stats.set("locked", 1, client)

    def resume(self, client: str, done: set[str]) -> None:
        """Campaigns an interrupted attempt of this run stored as synced: not synced again."""
        self.runs[client].resumable = done

    def interrupt(self, client: str, reason: str) -> None:
        run = self.runs[client]
        if run.state is not State.HELD:
            return
        run.state, run.interruption = State.INTERRUPTED, reason
        self.stats.inc("clients_interrupted", client)
        logger.error("Client %s: %s; nothing more is sent for it", client, reason, extra={"client": client})

    def unavailable(self, client: str, since: float, outage: float) -> None:
        """The platform failed every request since ``since`` (Unix time): nothing more is sent."""
        run = self.runs[client]
        if run.unavailable:
            return
        run.unavailable = f"platform unavailable since {datetime.fromtimestamp(since, timezone.utc):%H:%M:%S} UTC"
        self.fault(client, run.unavailable)
        self.stats.inc("platform_unavailable", client)
        logger.error("Client %s: %s (%.0fs without an answer); nothing more is sent for it", client,
                     run.unavailable, outage, extra={"client": client})

    def fail_auth(self, client: str, reason: str) -> bool:
        """True when no held client is left that can authenticate."""
        self.runs[client].auth_failure = reason
        self.stats.inc("auth_failed", client)
        self.stats.set("auth_failure", reason, client)
        return all(self.runs[c].auth_failure for c in self.held())

    def notice(self, problem: str) -> None:
        """Something no client's outcome owns went wrong (a metrics push): named last, exit status 1."""
        if problem not in self.notices:
            self.notices.append(problem)

    def fault(self, client: str, reason: str) -> None:
        """The run could not record something it owes (its run row...): the outcome says so."""
        run = self.runs[client]
        if reason not in run.faults:
            run.faults.append(reason)
            if run.outcome is not None:
                self._settle(run)

    # -- requests --------------------------------------------------------------------------
    def sent(self, client: str) -> None:
        if client in self.runs:
            self.runs[client].requests_sent += 1
        self.stats.inc("requests_sent", client)

    def answered(self, client: str, latency: float) -> None:
        if client in self.runs:
            self.runs[client].last_latency, self.runs[client].last_answer_at = latency, self.clock()
        self.stats.set("last_latency_seconds", round(latency, 3), client)

    # -- the listing -------------------------------------------------------------------------
    def page_read(self, client: str, total: object) -> None:
        run = self.runs[client]
        self.stats.inc("list_pages", client)
        if run.listing.total is None:
            run.listing.announce(total)
            if run.listing.total is not None:
                self.stats.set("campaigns_expected", run.listing.total, client)

    def listed(self, client: str, key: str, digest: str, record: Any = None) -> str:
        """A record listed: ``new``, ``duplicate`` or ``changed`` (listed before with other contents)."""
        run = self.runs[client]
        verdict = run.listing.admit(key, digest)
        if verdict == "new" and isinstance(record, dict):
            run.fields_seen.update(record)
            run.fields_in_every = set(record) if run.fields_in_every is None else run.fields_in_every & set(record)
        self.stats.inc({"new": "campaigns_seen", "duplicate": "campaigns_duplicate",
                        "changed": "campaigns_conflicting"}[verdict], client)
        return verdict

    def page_done(self, client: str, page: int, received: int, new: int, beyond_before: int, limit: object,
                  has_more: object) -> int | None:
        """A page was read: the page to ask for next, or None when the listing is complete."""
        run, listing = self.runs[client], self.runs[client].listing
        if listing.beyond > beyond_before:
            self.stats.inc("campaigns_beyond_total", client, listing.beyond - beyond_before)
            logger.warning("Client %s: page %d brings the campaigns listed to %d, beyond the %d announced; all "
                           "kept (the platform's total is wrong)", client, page, listing.seen, listing.total,
                           extra={"client": client})
        after = listing.next_page(page, received, new, limit, has_more)
        if after is not None:
            return after
        if listing.stop_reason:
            logger.warning("Client %s: listing stopped: %s", client, listing.stop_reason, extra={"client": client})
        if listing.truncated:
            self.stats.inc("listings_truncated", client)
        logger.info("Client %s: list complete, %d campaigns on %d page(s)", client, listing.seen, listing.pages,
                    extra={"client": client})
        run.listing_done = True
        return None

    def list_failed(self, client: str, page: int, reason: str) -> None:
        run = self.runs[client]
        run.list_failed += 1
        run.listing_done = True
        self.stats.inc("list_failed", client)
        logger.error("Client %s: gave up on list page %d (%s); campaigns after it are not synced", client, page,
                     reason, extra={"client": client})

    def to_sync(self, client: str, campaign_id: str, storable: bool = True) -> bool:
        """Whether to send this listed id's sync now."""
        run = self.runs[client]
        if campaign_id in run.syncable:  # the same id under another representation on this list
            self.stats.inc("campaigns_duplicate", client)
            return False
        run.syncable.add(campaign_id)
        if storable and campaign_id in run.resumable:
            run.resumed += 1
            self.stats.inc("campaigns_resumed", client)
            return False
        if self.dry_run:
            run.would_store += storable
            return False
        return True

    def relisted(self, client: str, campaign: Campaign) -> str:
        """A campaign listed again with other contents: ``synced``, ``failed`` or ``pending``."""
        run, cid = self.runs[client], campaign.campaign_id
        run.latest[cid] = campaign
        if cid in run.failed:
            run.failed[cid] = replace(run.failed[cid], campaign=campaign)
        return "synced" if cid in run.synced else "failed" if cid in run.failed else "pending"

    def quarantined(self, client: str, problem: str | None = None) -> None:
        """A ``problem`` an earlier run quarantined too is counted, but does not make the run partial."""
        self.stats.inc("campaigns_quarantined", client)
        run = self.runs.get(client)
        if run is None:
            return
        run.quarantined += 1
        if problem in run.known_problems:
            run.quarantined_again += 1
            self.stats.inc("campaigns_quarantined_again", client)

    # -- syncs -----------------------------------------------------------------------------
    def sync_sent(self, client: str) -> None:
        self.runs[client].pending += 1

    def synced(self, client: str, campaign_id: str, campaign: Campaign | None) -> Campaign | None:
        """Returns the version of the campaign to store: the latest listed."""
        run = self.runs[client]
        run.pending -= 1
        run.synced.add(campaign_id)
        self.stats.inc("campaigns_synced", client)
        if run.failed.pop(campaign_id, None) is not None:
            run.recovered += 1
            self.stats.inc("campaigns_recovered", client)
        return run.latest.get(campaign_id, campaign)

    def sync_failed(self, client: str, campaign_id: str, failed: FailedSync) -> Campaign | None:
        """The campaign to store as failed the first time, else None."""
        run = self.runs[client]
        run.pending -= 1
        first = campaign_id not in run.failed
        campaign = run.latest.get(campaign_id, failed.campaign)
        run.failed[campaign_id] = replace(failed, campaign=campaign)
        if not first:
            return None
        if not run.unavailable:  # else one line has said it for all
            logger.warning("Client %s: sync of %s failed: %s", client, campaign_id, failed.error,
                           extra={"client": client})
        return campaign

    def next_pass(self, client: str) -> dict[str, FailedSync]:
        """Once a pass is over: the failed syncs to try again, while passes remain."""
        run = self.runs[client]
        retry = {cid: f for cid, f in run.failed.items() if f.retryable}
        if not run.listing_done or run.pending or not retry or run.passes >= SYNC_PASSES \
                or not self.may_send(client):
            return {}
        if run.passes > 1 and not run.recovered:  # another would most likely do no better
            logger.info("Client %s: pass %d recovered none of its failed syncs; no more passes", client, run.passes,
                        extra={"client": client})
            return {}
        run.passes, run.recovered = run.passes + 1, 0
        self.stats.inc("sync_passes", client)
        logger.info("Client %s: pass %d of %d over %d failed sync(s)", client, run.passes, SYNC_PASSES, len(retry),
                    extra={"client": client})
        return retry

    # -- what happened to rows ----------------------------------------------------------------
    def recorded(self, client: str, synced: int, failed: int) -> None:
        """The run record counts these from the rows: with an earlier attempt's, when resumed."""
        self.runs[client].recorded = (synced, failed)

    def stored(self, item: CampaignItem) -> None:
        run = self.runs.get(item.client_id)
        if run is None or item.campaign_id in run.stored:
            return
        run.stored.add(item.campaign_id)
        self.stats.inc("campaigns_stored", item.client_id)
        if item.quality_flags:
            self.stats.inc("campaigns_flagged", item.client_id)
            for flag in item.quality_flags:
                self.stats.inc("flags", item.client_id, reason=flag)

    def listings(self) -> dict[str, tuple[set[str], bool]]:
        """Each held client's listed ids, and whether the listing was complete (only a complete
        listing says a campaign is gone)."""
        out = {}
        for client, run in self.runs.items():
            listing = run.listing
            if run.state is State.HELD and listing.pages:
                listed = {key[3:] for key in listing.keys if key.startswith("id:")}
                out[client] = (listed, run.listing_done and len(listed) == len(listing.keys) and not (
                    run.list_failed or listing.truncated or listing.missing or listing.stop_reason or run.unavailable))
        return out

    def removed(self, client: str, removals: Removals) -> None:
        run = self.runs[client]
        run.removals = removals
        self.stats.inc("campaigns_removed", client, len(removals.removed))
        self.stats.inc("campaigns_back", client, removals.back)
        self.stats.inc("campaigns_removal_held", client, removals.held)
        if removals.removed:
            logger.info("Client %s: %d campaign(s) no longer listed, marked removed: %s", client,
                        len(removals.removed), shown(removals.removed, 10), extra={"client": client})
        if removals.back:
            logger.info("Client %s: %d campaign(s) marked removed are listed again", client, removals.back,
                        extra={"client": client})
        if removals.held:
            logger.warning("Client %s: %s", client, held_text(removals), extra={"client": client})

    def fields(self, client: str) -> tuple[set[str], set[str]]:
        run = self.runs[client]
        return run.fields_seen, run.fields_in_every or set()

    def fields_changed(self, client: str, before: tuple[set[str], set[str]] | None) -> None:
        """Fields new since the last complete listing, and those every record had then and none has now."""
        run = self.runs[client]
        seen, every = before or (set(), set())
        new = sorted(run.fields_seen - MODELLED - seen)
        gone = sorted(every - run.fields_seen)
        self.stats.inc("fields_new", client, len(new))
        self.stats.inc("fields_vanished", client, len(gone))
        if new:
            logger.info("Client %s: the records carry field(s) the campaigns do not model, new since the last "
                        "listing: %s (kept in raw)", client, shown(new, 20, 64), extra={"client": client})
        if gone:
            logger.warning("Client %s: field(s) every record had at the last listing and none has now: %s", client,
                           shown(gone, 20, 64), extra={"client": client})

    def spooled(self, client: str, cause: str, rows: int = 1) -> None:
        if client in self.runs:
            self.runs[client].spooled[cause] += rows
        self.stats.inc("rows_spooled", client, rows, reason=cause.replace(" ", "_"))

    # -- the end -----------------------------------------------------------------------------
    def spider_closed(self, spider: Any, reason: str) -> None:
        """Runs before every other extension's handler (the ledger is first in EXTENSIONS)."""
        self.finish_reason = reason
        for run in self.runs.values():
            if run.state in (State.HELD, State.INTERRUPTED):
                run.last_answer_at = run.last_answer_at or self.clock()
                self._close(run)
            self._settle(run)

    def _close(self, run: ClientRun) -> None:
        client = run.client.client_id
        self.stats.set("campaigns_sync_failed", len(run.failed), client)
        self.stats.set("campaigns_not_attempted", run.not_attempted, client)
        if run.failed:
            logger.error("Client %s: %d campaign(s) could not be synced: %s", client, len(run.failed),
                         shown(sorted(run.failed), 10), extra={"client": client})
        elapsed = (run.last_answer_at - run.started_at).total_seconds() if run.started_at else 0.0
        self.stats.set("elapsed_seconds", round(elapsed, 3), client)
        self.stats.set("lower_bound_seconds", round(lower_bound_seconds(run.requests_sent, *self.rate,
                                                                        run.last_latency), 3), client)

    def _settle(self, run: ClientRun) -> None:
        run.outcome = client_outcome(run, self.finish_reason != "finished", self.dry_run)
        self.stats.set("outcome", str(run.outcome.name), run.client.client_id)
        self.stats.set("outcome_reasons", ", ".join(run.outcome.reasons), run.client.client_id)

    def outcomes(self) -> dict[str, Outcome]:
        return {c: run.outcome for c, run in self.runs.items() if run.outcome is not None}

    def final_line(self) -> tuple[bool, str]:
        """(complete, the last line a person reads)."""
        complete, line = final_line(self.outcomes(), str(self.finish_reason))
        if self.dry_run and complete:
            said = "; ".join(f"{c}: {', '.join(o.reasons)}" for c, o in sorted(self.outcomes().items()) if o.reasons)
            return True, f"Dry run complete, nothing written and no sync sent: {said}"
        if self.notices:
            return False, f"{line}; but {'; '.join(self.notices)}"
        return complete, line


# -- outcomes (pure logic) ---------------------------------------------------------------------

def client_outcome(run: ClientRun, stopped_early: bool, dry_run: bool = False) -> Outcome:
    """``succeeded`` only when every announced campaign was listed, synced and stored (docs/reference.md
    lists the outcomes)."""
    if run.state is State.SKIPPED:
        return Outcome(Result.SKIPPED, ("another run is syncing this client",))
    if run.state is State.INTERRUPTED:
        return Outcome(Result.INTERRUPTED, (str(run.interruption), *run.faults))
    if run.auth_failure:
        return Outcome(Result.FAILED, (run.auth_failure, *run.faults))
    if not run.seen and (run.list_failed or stopped_early or not run.listing.pages):
        if run.faults and not run.list_failed:  # what stopped it, not that it stopped
            return Outcome(Result.FAILED, tuple(run.faults))
        reason = "the campaign list could not be read" if run.list_failed else "stopped before listing"
        return Outcome(Result.FAILED, (reason, *run.faults))
    listing = [f"{run.list_failed} list page(s) unreadable"] if run.list_failed else []
    if run.listing.missing:
        listing.append(f"{run.listing.missing} of {run.listing.total} announced campaigns never listed")
    if run.listing.truncated:
        listing.append(f"listing {run.listing.stop_reason}")
    if dry_run:
        would = (f"would store {run.would_store}, quarantine {run.quarantined} and sync {len(run.syncable)} of "
                 f"{run.seen} listed")
        listing += ["the crawl stopped early"] if stopped_early else []
        return Outcome(Result.PARTIAL if listing else Result.SUCCEEDED, (would, *listing))
    counts = [
        (run.quarantined - run.quarantined_again, "{} quarantined"),
        (len(run.failed), "{} sync failed"),
        (run.not_attempted, "{} not synced" if run.unavailable else "{} not synced before the crawl stopped"),
        *((count, f"{{}} {SPOOLED} ({cause})") for cause, count in sorted(run.spooled.items())),
    ]
    reasons = [text.format(count) for count, text in counts if count] + listing
    unstored = run.seen - len(run.stored) - run.quarantined - run.resumed - run.not_attempted - sum(
        run.spooled.values())
    if unstored > 0:
        reasons.append(f"{unstored} not stored")
    if run.removals and run.removals.held:
        reasons.append(held_text(run.removals))
    reasons.extend(run.faults)
    if stopped_early and not reasons:
        reasons.append("the crawl stopped early")
    return Outcome(Result.PARTIAL if reasons else Result.SUCCEEDED, tuple(reasons))


def held_text(removals: Removals) -> str:
    return (f"the listing shrank from {removals.before} to {removals.listed} campaigns: {removals.held} removals "
            "held back (if they are real, confirm with -a confirm_removals=1)")


def after_replay(outcome: str | None, reasons: str | None, unreadable: int = 0) -> tuple[str, str | None]:
    """A run's outcome once a replay stored its spooled rows; a run still ``running`` is closed as interrupted."""
    kept = [r for r in (reasons or "").split(", ") if r and SPOOLED not in r]
    if unreadable:
        kept.append(f"{unreadable} spooled row(s) unreadable, kept in quarantine")
    if outcome in (None, "running"):
        return Result.INTERRUPTED.value, ", ".join(["the run ended before recording its outcome; its spool was "
                                                    "replayed", *kept])
    if outcome == Result.PARTIAL and not kept:
        return Result.SUCCEEDED.value, None
    return outcome, ", ".join(kept) or None


def final_line(outcomes: Mapping[str, Outcome], finish_reason: str) -> tuple[bool, str]:
    """(complete, the last line a person reads) for a run's outcomes."""
    incomplete = {c: o for c, o in outcomes.items() if o.name not in (Result.SUCCEEDED, Result.SKIPPED)}
    skipped = sorted(c for c, o in outcomes.items() if o.name is Result.SKIPPED)
    described = [f"{c}: {o.describe()}" for c, o in sorted(incomplete.items())]
    if finish_reason not in ("finished", "auth_failed") or not outcomes:
        return False, "Sync incomplete: " + "; ".join([f"the crawl ended with reason {finish_reason!r}", *described])
    if incomplete:
        return False, "Sync incomplete: " + "; ".join(described)
    tail = f"; skipped (another run holds them): {', '.join(skipped)}" if skipped else ""
    return True, f"Sync complete: {len(outcomes) - len(skipped)} client(s) succeeded{tail}"
