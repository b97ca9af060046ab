"""The run's life in the database: its identity, one lock per client, one ``sync_runs`` row per client.

When the spider opens, for each client:

- the client's lock is taken (a PostgreSQL advisory lock, or a file lock beside
  the SQLite file, both released if the process dies). A client locked by
  another run is ``skipped``: nothing is sent for it, its row says ``skipped``
  and which run holds it, and the other clients go on;
- runs of the client that never finished (killed) are marked ``interrupted``
  and logged;
- this run's row is written as ``running``, with the process that runs it
  (scrapyd job id, node and egg version, or host; and pid), so a run killed from
  now on shows as such until the next run of the client marks it. A client whose row cannot
  be written is not synced (its outcome says why).

A lock is a lease: every ``ADCRAWLER_LOCK_CHECK_INTERVAL`` seconds the run
checks it still holds each client's lock (the PostgreSQL session that took it
is alive; the lock file is still the one at its path). A client whose lock is
lost is interrupted at once: nothing more is sent for it, and its run is
recorded ``interrupted`` with the reason. Locks are never taken again
silently on a new connection. Every statement is bounded
(``ADCRAWLER_DB_STATEMENT_TIMEOUT``, ``ADCRAWLER_DB_LOCK_TIMEOUT``).

A process that holds no client writes nothing into the job directory.

Which clients the run holds or skips is recorded in the run ledger; then the
``clients_held`` signal tells the store pipeline which run it writes for (it
stores what an interrupted attempt journaled first). When the spider closes,
each row is completed with the client's own start and end, the outcome the
ledger settled, the counts and the stats. A row that cannot be written is a
fault of the run: the client's outcome says so and the exit status is 1.

The run id comes from the job directory when there is one (see
:mod:`adcrawler.jobdir`): an interrupted run resumes under its id, a finished
one is followed by a new run.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, JOBDIR, ADCRAWLER_LOCK_CHECK_INTERVAL,
ADCRAWLER_DB_STATEMENT_TIMEOUT, ADCRAWLER_DB_LOCK_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.asyncio import run_in_thread, sleep

from adcrawler import logs
from adcrawler.config import value
from adcrawler.jobdir import JobState
from adcrawler.ledger import CLIENTS_HELD, RunLedger
from adcrawler.logs import log_failure
from adcrawler.outcome import SUCCEEDED
from adcrawler.stats import PREFIX, RunStats, key
from adcrawler.store import RunOrigin, SchemaBehind, Store, Waits, first_line, open_store, waits_of

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def origin_of(spider: Any) -> RunOrigin:
    """Which process this is: the scrapyd job (its id, the node the dispatcher named, the egg
    version it pinned) or, for a crawl started by hand, the host; and the process id."""
    job = getattr(spider, "_job", None)
    return RunOrigin(job_id=job, node=getattr(spider, "node", None) or socket.gethostname(),
                     egg_version=os.environ.get("SCRAPYD_EGG_VERSION") if job else None, pid=os.getpid())


class RunRecords:
    def __init__(self, crawler: Crawler, database_url: str, sqlite_path: str, jobdir: str | None,
                 waits: Waits = Waits(), check_interval: float = 5.0, dry_run: bool = False,
                 rate: tuple[int, float] = (10, 60.0)):
        self.crawler = crawler
        self.rate = rate  # the configured budget, recorded when nothing changed it
        self.dry_run = dry_run
        self.database_url = database_url
        self.sqlite_path = sqlite_path
        self.waits = waits
        self.check_interval = check_interval
        self.job = JobState.load(jobdir)
        self.stats = RunStats(crawler)
        self.stats.set("run_id", self.job.run_id)
        logs.set_run_id(self.job.run_id)
        self.store: Store | None = None
        self.db = asyncio.Lock()  # one call at a time on the connection that holds the locks
        self.heartbeat: asyncio.Task | None = None
        self.last_success: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "RunRecords":
        s = crawler.settings
        ext = cls(crawler, value(s, "DATABASE_URL"), value(s, "ADCRAWLER_SQLITE_PATH"), s.get("JOBDIR") or None,
                  waits_of(s), value(s, "ADCRAWLER_LOCK_CHECK_INTERVAL"), value(s, "ADCRAWLER_DRY_RUN"),
                  (value(s, "ADCRAWLER_RATE_LIMIT"), value(s, "ADCRAWLER_RATE_WINDOW")))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    @property
    def ledger(self) -> RunLedger:
        return RunLedger.of(self.crawler)  # built with this extension: looked up at use

    async def spider_opened(self, spider: Any) -> None:
        if self.dry_run:  # nothing to record and nothing written: no lock either
            for client in list(self.ledger.runs):
                self.ledger.hold(client)
            return
        try:
            self.store = await run_in_thread(open_store, self.database_url, self.sqlite_path, self.waits,
                                             "adcrawler-runs")  # the session that holds the locks
            await run_in_thread(self.store.migrate)
        except Exception as exc:  # noqa: BLE001 - the pipeline has already closed the spider
            if not isinstance(exc, SchemaBehind):  # which the pipeline has said
                logger.error("Run records unavailable: %s", first_line(exc))
            self.store = None
            return
        if self.job.resumed:
            logger.info("Resuming run %s from the job directory", self.job.run_id)
        self.origin = origin_of(spider)
        for client in list(self.ledger.runs):
            if not await run_in_thread(self.store.try_lock, client):
                self.ledger.skip(client)
                try:
                    holder = await run_in_thread(self.store.record_skipped, self.job.run_id, client,
                                                 datetime.now(timezone.utc), self.origin)
                except Exception as exc:  # noqa: BLE001 - the skip is logged all the same
                    holder = f"another run holds the client (not recorded: {first_line(exc)})"
                logger.warning("Client %s skipped: %s", client, holder, extra={"client": client})
                continue
            run = self.ledger.run(client)
            run.started_at = datetime.now(timezone.utc)
            try:
                stale = await run_in_thread(self.store.start_run, self.job.run_id, client, run.started_at,
                                            self.origin)
                last = await run_in_thread(self.store.last_success, client)
            except Exception as exc:  # noqa: BLE001 - a run that cannot be recorded is not started
                logger.error("Client %s: its run cannot be recorded (%s: %s); not synced", client,
                             type(exc).__name__, first_line(exc), extra={"client": client})
                self.ledger.fault(client, "the run record could not be written")
                continue
            self.ledger.hold(client)
            try:
                run.known_problems = await run_in_thread(self.store.known_problems, client, self.job.run_id)
            except Exception as exc:  # noqa: BLE001 - every quarantine then counts as new
                logger.warning("Client %s: earlier quarantines unavailable (%s)", client, first_line(exc),
                               extra={"client": client})
            for run_id, started in stale:
                logger.warning("Client %s: run %s (started %s) never finished: the process ended first; "
                               "recorded as interrupted", client, run_id, started, extra={"client": client})
            if last is not None:
                self.last_success[client] = last.timestamp()
        if not self.ledger.held():
            return  # a process that holds no client leaves the job directory alone
        self._save_job("running")
        self.heartbeat = asyncio.ensure_future(self._check_locks())
        self.heartbeat.add_done_callback(log_failure)
        await self.crawler.signals.send_catch_log_async(signal=CLIENTS_HELD, job=self.job,
                                                        clients=self.ledger.held())

    async def _check_locks(self) -> None:
        """Every ADCRAWLER_LOCK_CHECK_INTERVAL: a client whose lock was lost is
        interrupted at once (another run may be syncing it now)."""
        while True:
            await sleep(self.check_interval)
            async with self.db:
                lost = await run_in_thread(self.store.locks_lost)
            for client in lost:
                self.ledger.interrupt(client, "its lock was lost: another run may be syncing it")

    async def spider_closed(self, spider: Any, reason: str) -> None:
        # Before the first await: the metrics push, whose handler starts after
        # this one, reads what is set here.
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        if self.dry_run:
            return  # a dry run is not a run: no success to record
        now = time.time()
        for client in self.ledger.owned():
            if self.ledger.run(client).outcome.name == SUCCEEDED:
                self.last_success[client] = now
            if client in self.last_success:
                self.stats.set("last_success_timestamp", self.last_success[client], client)
        all_stats = dict(self.crawler.stats.get_stats())
        if self.store is None or not self.ledger.owned():
            if self.store is not None:
                await run_in_thread(self.store.close)
            return
        async with self.db:
            for client in self.ledger.owned():
                await self._record(client, reason, all_stats)
            await run_in_thread(self.store.close)  # releases the locks
        # A job directory whose run ended starts a new run next time; a stopped one resumes.
        self._save_job("running" if reason == "shutdown" else "finished")

    def _save_job(self, state: str) -> None:
        try:
            self.job.save(state)
        except OSError as exc:  # a full disk: the run goes on, but the directory cannot say where it is
            logger.error("The job directory cannot be written (%s): this run cannot be resumed from it, and "
                         "the next crawl with it may take it for this run", exc.strerror or exc)
            self.ledger.notice("the job directory could not be written")

    async def _record(self, client: str, reason: str, all_stats: dict[str, Any]) -> None:
        row = self._row(client, reason, all_stats)
        for attempt in (1, 2):
            try:
                await run_in_thread(self.store.record_run, row)
                return
            except Exception as exc:  # noqa: BLE001 - said in the outcome, never a traceback
                if attempt == 2:
                    logger.error("Could not record the run of client %s: %s: %s", client, type(exc).__name__,
                                 first_line(exc), extra={"client": client})
                    self.ledger.fault(client, "the run record could not be written")
                else:  # a connection lost during the run: one more try on a new one
                    await run_in_thread(self._reconnect)

    def _reconnect(self) -> None:
        try:
            self.store.reconnect()
        except Exception as exc:  # noqa: BLE001 - the second attempt reports it
            logger.warning("Reconnecting for the run records failed: %s", first_line(exc))

    def _row(self, client: str, reason: str, all_stats: dict[str, Any]) -> dict[str, Any]:
        def g(name: str) -> Any:
            return self.stats.get(name, client)

        run = self.ledger.run(client)
        own, any_client = key("", client), f"{PREFIX}/client/"
        return {
            "run_id": self.job.run_id, "client_id": client, "started_at": run.started_at,
            "finished_at": run.last_answer_at, "outcome": run.outcome.name,
            "outcome_reasons": ", ".join(run.outcome.reasons) or None,
            # The stored counts (synced, rows inserted...) are counted from the run's rows
            # by the store, so a resumed or replayed run is counted right.
            "finish_reason": reason, "campaigns_seen": run.seen, "retries": g("retries"),
            "responses_429": g("responses_429"), "token_refreshes": g("token_refreshes"),
            "rate_limit": self.stats.get("rate_limit_effective", client) or self.rate[0],
            "rate_window": self.stats.get("rate_window_effective", client) or self.rate[1],
            "stats": {k: v for k, v in all_stats.items() if not k.startswith(any_client) or k.startswith(own)},
        }
