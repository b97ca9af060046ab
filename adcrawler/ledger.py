"""The run ledger: every client's run state, owned in one place, reached through the crawler.

One :class:`ClientRun` per client of the crawl holds what the run knows of it:
whether this run holds its lock, its listing, which campaigns are synced,
failed, stored or resumed, what was quarantined or spooled, why it could not
authenticate, what the run could not record, its own start and end, and in
the end its outcome. Components never read each other's state or the stats
to learn these things; they ask the ledger::

    ledger = RunLedger.of(crawler)   # an extension, first in EXTENSIONS

Who writes what: the spider registers its clients and keeps their listing and
sync state; the run records say which clients this run holds; the scheduler
counts requests and answers; the token middleware records a refused client;
the store pipeline what was stored, quarantined or spooled, and what a resumed
run had stored before. Every change that is also a stat is counted here, so
the stats say what the ledger says.

When the spider closes, the ledger settles each client's outcome
(:func:`adcrawler.outcome.client_outcome`) before the run records, the stats
file and the metrics read it; the crawl command's exit status and last line
come from :meth:`RunLedger.final_line`.

In a dry run (``ADCRAWLER_DRY_RUN``) the outcome says what the run would have
stored, quarantined and synced.

Settings: ADCRAWLER_PAGE_SIZE, ADCRAWLER_MAX_CAMPAIGNS, ADCRAWLER_QUARANTINE_ALERT, ADCRAWLER_SYNC_PASSES,
ADCRAWLER_RATE_LIMIT, ADCRAWLER_RATE_WINDOW, ADCRAWLER_DRY_RUN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scrapy import signals

from adcrawler.clients import Client
from adcrawler.config import value
from adcrawler.items import Campaign, CampaignItem
from adcrawler.outcome import Outcome, client_outcome, dry_run_outcome, final_line
from adcrawler.pagination import Listing
from adcrawler.ratelimit import lower_bound_seconds
from adcrawler.stats import RunStats

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

WAITING, HELD, SKIPPED, INTERRUPTED = "waiting", "held", "skipped", "interrupted"

# Sent by the run records once the run holds its clients' locks, with
# ``job`` (the JobState) and ``clients`` (the client ids held).
CLIENTS_HELD = object()


@dataclass
class FailedSync:
    campaign: Campaign | None  # None: a quarantined record, synced for the platform's sake
    fetched_at: datetime
    error: str
    retryable: bool  # a transient failure: worth another pass


@dataclass(frozen=True)
class Progress:
    done: int  # campaigns settled: synced, quarantined without a usable id, or failed for good
    known: int  # campaigns known to exist: listed, or announced while the listing goes on
    retrying: int  # failed syncs waiting for another pass
    listing_done: bool


@dataclass
class ClientRun:
    """One client's run: everything the crawl knows of it."""

    client: Client
    listing: Listing
    # HELD once this run holds the client's lock; SKIPPED when another run does;
    # INTERRUPTED when the run stopped working for it (its lock lost, nowhere to store).
    state: str = WAITING
    interruption: str | None = None
    started_at: datetime | None = None
    last_answer_at: datetime | None = None
    listing_done: bool = False
    list_failed: int = 0  # list pages given up on
    pending: int = 0  # sync requests not settled yet
    passes: int = 1
    syncable: set[str] = field(default_factory=set)  # usable ids listed
    latest: dict[str, Campaign] = field(default_factory=dict)  # campaigns listed again with other contents
    synced: set[str] = field(default_factory=set)
    failed: dict[str, FailedSync] = field(default_factory=dict)
    resumable: set[str] = field(default_factory=set)  # stored as synced by an interrupted attempt of this run
    resumed: int = 0  # listed campaigns skipped because they are resumable
    stored: set[str] = field(default_factory=set)
    would_store: int = 0  # a dry run: valid campaigns it would have stored
    quarantined: int = 0
    # Problems (campaign or payload, and reason) quarantined by earlier runs, and how
    # many quarantines of this run repeat one (ADCRAWLER_QUARANTINE_ALERT=new: not partial).
    known_problems: set[str] = field(default_factory=set)
    quarantined_again: int = 0
    spooled: dict[str, int] = field(default_factory=dict)  # rows spooled, by cause (lock timeout, disk...)
    auth_failure: str | None = None
    faults: list[str] = field(default_factory=list)  # what the run could not record
    requests_sent: int = 0
    last_latency: float = 0.0
    outcome: Outcome | None = None

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def seen(self) -> int:
        return self.listing.seen

    @property
    def not_attempted(self) -> int:
        """Listed, syncable, and never synced nor failed: the crawl stopped first."""
        return len(self.syncable - self.synced - self.failed.keys() - self.resumable)

    def progress(self, max_passes: int) -> Progress:
        more_passes = self.passes < max_passes
        failed_for_good = sum(1 for f in self.failed.values() if not (f.retryable and more_passes))
        without_id = self.seen - len(self.syncable)  # quarantined, nothing to sync
        done = len(self.synced) + len(self.resumable & self.syncable) + without_id + failed_for_good
        known = self.seen if self.listing_done else max(self.listing.total or 0, self.seen)
        return Progress(done=min(done, known), known=known, retrying=len(self.failed) - failed_for_good,
                        listing_done=self.listing_done)


class RunLedger:
    def __init__(self, stats: RunStats, page_size: int, max_passes: int, rate_limit: int, rate_window: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), dry_run: bool = False,
                 max_campaigns: int = 10_000, quarantine_alert: str = "new"):
        self.stats = stats
        self.dry_run = dry_run
        self.page_size = page_size
        self.max_campaigns = max_campaigns
        self.quarantine_alert = quarantine_alert
        self.max_passes = max_passes
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.clock = clock
        self.runs: dict[str, ClientRun] = {}
        self.finish_reason: str | None = None
        self.notices: list[str] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "RunLedger":
        s = crawler.settings
        ledger = cls(RunStats(crawler), value(s, "ADCRAWLER_PAGE_SIZE"), value(s, "ADCRAWLER_SYNC_PASSES"),
                     value(s, "ADCRAWLER_RATE_LIMIT"), value(s, "ADCRAWLER_RATE_WINDOW"),
                     dry_run=value(s, "ADCRAWLER_DRY_RUN"), max_campaigns=value(s, "ADCRAWLER_MAX_CAMPAIGNS"),
                     quarantine_alert=value(s, "ADCRAWLER_QUARANTINE_ALERT"))
        crawler.signals.connect(ledger.spider_closed, signal=signals.spider_closed)
        return ledger

    @staticmethod
    def of(crawler: Crawler) -> "RunLedger":
        ledger = crawler.get_extension(RunLedger)
        if ledger is None:
            raise RuntimeError("adcrawler.ledger.RunLedger must be enabled in EXTENSIONS")
        return ledger

    # -- the clients of this crawl ------------------------------------------------------
    def open(self, clients: Iterable[Client]) -> None:
        """The clients this crawl was asked to sync (the spider calls this once)."""
        for client in clients:
            self.runs[client.client_id] = ClientRun(client, Listing(self.page_size, self.max_campaigns))

    def run(self, client: str) -> ClientRun:
        return self.runs[client]

    def held(self) -> list[str]:
        """Clients whose lock this run holds: the ones it works for."""
        return [c for c, run in self.runs.items() if run.state == HELD]

    def owned(self) -> list[str]:
        """Clients this run took the lock of, held still or interrupted since: the ones it records."""
        return [c for c, run in self.runs.items() if run.state in (HELD, INTERRUPTED)]

    def may_send(self, client: str) -> bool:
        """Whether a request of ``client`` may go out (unknown clients: yes)."""
        run = self.runs.get(client)
        return run is None or run.state == HELD

    def hold(self, client: str) -> None:
        run = self.runs[client]
        run.state, run.started_at = HELD, run.started_at or self.clock()

    def skip(self, client: str) -> None:
        """Another run holds the client: nothing is sent for it."""
        self.runs[client].state = SKIPPED
        self.stats.set("locked", 1, client)

    def interrupt(self, client: str, reason: str) -> None:
        """Stop working for ``client`` at once (its lock was lost...): nothing more
        is sent for it, and its outcome is ``interrupted`` with ``reason``."""
        run = self.runs[client]
        if run.state != HELD:
            return
        run.state, run.interruption = INTERRUPTED, reason
        self.stats.inc("clients_interrupted", client)
        logger.error("Client %s: %s; nothing more is sent for it", client, reason, extra={"client": client})

    def fail_auth(self, client: str, reason: str) -> bool:
        """The client could not authenticate; True when no held client is left that can."""
        self.runs[client].auth_failure = reason
        self.stats.inc("auth_failed", client)
        self.stats.set("auth_failure", reason, client)
        return all(self.runs[c].auth_failure for c in self.held())

    def notice(self, problem: str) -> None:
        """Something the run could not do that no client's outcome owns (a metrics
        push): the last line names it and the exit status is 1."""
        if problem not in self.notices:
            self.notices.append(problem)

    # -- what happened to requests and rows ------------------------------------------
    def sent(self, client: str) -> None:
        if client in self.runs:
            self.runs[client].requests_sent += 1
        self.stats.inc("requests_sent", client)

    def answered(self, client: str, latency: float) -> None:
        if client in self.runs:
            run = self.runs[client]
            run.last_latency, run.last_answer_at = latency, self.clock()
        self.stats.set("last_latency_seconds", round(latency, 3), client)

    def quarantined(self, client: str, problem: str | None = None) -> None:
        """A record of ``client`` was quarantined; ``problem`` (``RejectedRecord.problem``) tells
        whether an earlier run quarantined the same campaign for the same reason."""
        self.stats.inc("campaigns_quarantined", client)
        run = self.runs.get(client)
        if run is None:
            return
        run.quarantined += 1
        if problem is not None and problem in run.known_problems and self.quarantine_alert == "new":
            run.quarantined_again += 1
            self.stats.inc("campaigns_quarantined_again", client)

    def stored(self, item: CampaignItem) -> None:
        """``item`` was written (a campaign stored twice in a run counts once)."""
        run = self.runs.get(item.client_id)
        if run is None or item.campaign_id in run.stored:
            return  # written again (a failed sync that succeeded on a later pass)
        run.stored.add(item.campaign_id)
        self.stats.inc("campaigns_stored", item.client_id)
        if item.quality_flags:
            self.stats.inc("campaigns_flagged", item.client_id)
            for flag in item.quality_flags:
                self.stats.inc("flags", item.client_id, reason=flag)

    def spooled(self, client: str, cause: str, rows: int = 1) -> None:
        if client in self.runs:
            spooled = self.runs[client].spooled
            spooled[cause] = spooled.get(cause, 0) + rows
        self.stats.inc("rows_spooled", client, rows, reason=cause.replace(" ", "_"))

    def fault(self, client: str, reason: str) -> None:
        """The run could not record something it owes (its run row...): the outcome says so."""
        run = self.runs[client]
        if reason in run.faults:
            return
        run.faults.append(reason)
        if run.outcome is not None:  # already settled: settle again with the fault
            self._settle(run)

    # -- the end ------------------------------------------------------------------------
    def progress(self, client: str) -> Progress:
        return self.runs[client].progress(self.max_passes)

    def spider_closed(self, spider: Any, reason: str) -> None:
        """Settle each client's outcome and timing before the run is recorded.

        Connected after the spider's own handler and before every other
        extension's (the ledger is first in EXTENSIONS)."""
        self.finish_reason = reason
        now = self.clock()
        for run in self.runs.values():
            if run.state in (HELD, INTERRUPTED):
                run.last_answer_at = run.last_answer_at or now
                self._close(run)
            self._settle(run)

    def _close(self, run: ClientRun) -> None:
        client = run.client_id
        self.stats.set("campaigns_sync_failed", len(run.failed), client)
        self.stats.set("campaigns_not_attempted", run.not_attempted, client)
        if run.failed:
            shown = ", ".join(sorted(run.failed)[:10]) + (" ..." if len(run.failed) > 10 else "")
            logger.error("Client %s: %d campaign(s) could not be synced: %s", client, len(run.failed), shown,
                         extra={"client": client})
        elapsed = (run.last_answer_at - run.started_at).total_seconds() if run.started_at else 0.0
        self.stats.set("elapsed_seconds", round(elapsed, 3), client)
        self.stats.set("lower_bound_seconds", round(lower_bound_seconds(
            run.requests_sent, self.rate_limit, self.rate_window, run.last_latency), 3), client)

    def _settle(self, run: ClientRun) -> None:
        decide = dry_run_outcome if self.dry_run else client_outcome
        run.outcome = decide(run, stopped_early=self.finish_reason != "finished")
        self.stats.set("outcome", run.outcome.name, run.client_id)
        self.stats.set("outcome_reasons", ", ".join(run.outcome.reasons), run.client_id)

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
