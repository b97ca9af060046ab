"""The run's life in the database: one lock per client (a client another run holds is skipped), one
``sync_runs`` row per client from ``running`` to its outcome, runs left running by a killed process
marked ``interrupted``, and a lost lock interrupting its client. The run id survives in ``JOBDIR``."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import sleep

from adcrawler import logs
from adcrawler.config import DRY_RUN, scaled, value
from adcrawler.disk import JobState
from adcrawler.ledger import CLIENTS_HELD, Result, RunLedger
from adcrawler.registry import scheduled_at
from adcrawler.retry import Decision, GaveUp, RetryPolicy, Verdict, keep_trying
from adcrawler.stats import PREFIX, RunStats, key
from adcrawler.store import Database, RunOrigin, Store, first_line

logger = logging.getLogger(__name__)

LOCK_CHECK_INTERVAL = 5.0  # how often the locks are checked, real seconds (scaled)
# Set by the crawl command from scrapyd's spider arguments: which job and node run this.
JOB, NODE = "adcrawler_job", "adcrawler_node"


def run_log(data_dir: str, run_id: str) -> Path:
    """Where a run's own copy of its log is (``scrapy runs`` names it)."""
    return Path(data_dir, "logs", f"{run_id}.log")


class RunRecorder:
    def __init__(self, crawler: Crawler):
        s, job = crawler.settings, crawler.settings.get(JOB)
        self.crawler = crawler
        self.keep_days = value(s, "ADCRAWLER_KEEP_DAYS")  # history and run records kept this long (0: for ever)
        self.origin = RunOrigin(job_id=job, node=s.get(NODE) or socket.gethostname(),
                                egg_version=os.environ.get("SCRAPYD_EGG_VERSION") if job else None, pid=os.getpid())
        self.check_interval = scaled(s, LOCK_CHECK_INTERVAL, 0.05)
        self.job = JobState.load(s.get("JOBDIR") or None)
        self.stats = RunStats(crawler)
        self.policy = RetryPolicy.from_settings(s)
        self.stats.set("run_id", self.job.run_id)
        logs.set_run_id(self.job.run_id)
        self.store: Store | None = None
        self.heartbeat: asyncio.Task | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RunRecorder:
        s = crawler.settings
        if s.getbool(DRY_RUN):
            raise NotConfigured  # a dry run is not a run: nothing recorded, no lock
        ext = cls(crawler)
        logs.keep_copy(run_log(value(s, "ADCRAWLER_DATA_DIR"), ext.job.run_id))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    # Extensions of the same crawler, looked up at use (they are built together).
    @property
    def ledger(self) -> RunLedger:
        return RunLedger.of(self.crawler)

    @property
    def database(self) -> Database:
        return Database.of(self.crawler)

    async def spider_opened(self, spider: Any) -> None:
        try:
            self.store = await self.database.open()
        except Exception as exc:  # noqa: BLE001 - the pipeline has said why, and closes the spider
            for client in self.ledger.runs:  # each outcome says why (and is pushed, for the alerts)
                self.ledger.fault(client, f"the database could not be opened ({first_line(exc)})")
            return
        call, run_id = self.database.call, self.job.run_id
        if self.job.resumed:
            logger.info("Resuming run %s from the job directory", run_id)
        holder = f"job {self.origin.job_id}" if self.origin.job_id else f"pid {self.origin.pid}"
        self.store.lease_as(run_id, f"{holder} on {self.origin.node}", self.database.lease)
        scheduled = scheduled_at(self.origin.job_id or "")
        for client in list(self.ledger.runs):
            reason = None
            if not await call(self.store.try_lock, client):
                reason = ""  # the store names the holder
            elif scheduled and not self.job.resumed:
                # Two dispatchers that looked at once both send a client; the job that comes second
                # finds it synced since it was scheduled and does not sync it again.
                last = await call(self.store.last_success, client)
                if last is not None and last.timestamp() > scheduled:
                    reason = f"synced at {last:%H:%M:%S} UTC, after this job was scheduled"
            if reason is not None:
                self.ledger.skip(client)
                try:
                    reason = await call(self.store.record_skipped, run_id, client, datetime.now(timezone.utc),
                                        self.origin, reason)
                except Exception as exc:  # noqa: BLE001 - the skip is logged all the same
                    reason = f"{reason or 'another run holds the client'} (not recorded: {first_line(exc)})"
                logger.warning("Client %s skipped: %s", client, reason, extra={"client": client})
                continue
            try:
                stale = await call(self.store.start_run, run_id, client, self.ledger.starting(client), self.origin)
                last = await call(self.store.last_success, client)
                problems = await call(self.store.known_problems, client, run_id)
            except Exception as exc:  # noqa: BLE001 - a run that cannot be recorded is not started
                logger.error("Client %s: its run cannot be recorded (%s: %s); not synced", client,
                             type(exc).__name__, first_line(exc), extra={"client": client})
                self.ledger.fault(client, "the run record could not be written")
                continue
            self.ledger.hold(client, problems)
            for stale_id, started in stale:
                logger.warning("Client %s: run %s (started %s) never finished: the process ended first; recorded "
                               "as interrupted", client, stale_id, started, extra={"client": client})
            # In the stats from the start (0: never): every progress push carries it.
            self.stats.set("last_success_timestamp", last.timestamp() if last is not None else 0.0, client)
        if not self.ledger.held():
            return  # a process that holds no client leaves the job directory alone
        self._save_job("running")
        self.heartbeat = asyncio.ensure_future(self._check_locks())
        self.heartbeat.add_done_callback(logs.log_failure)
        await self.crawler.signals.send_catch_log_async(signal=CLIENTS_HELD, job=self.job, clients=self.ledger.held())

    async def _check_locks(self) -> None:
        """Renew the locks that are leases; a client whose lock was lost is interrupted at once
        (another run may be syncing it now)."""
        while True:
            await sleep(self.check_interval)
            for client, why in (await self.database.call(self.store.locks_lost)).items():
                self.ledger.interrupt(client, why)

    async def spider_closed(self, spider: Any, reason: str) -> None:
        # Before the first await: the metrics push, whose handler starts after this one, reads it.
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        now = time.time()
        for client in self.ledger.owned():
            if self.ledger.run(client).outcome.name is Result.SUCCEEDED:
                self.stats.set("last_success_timestamp", now, client)
        if self.store is None:
            return
        all_stats = dict(self.crawler.stats.get_stats())
        for client in self.ledger.owned():
            if self.keep_days:
                await self._prune(client)
                all_stats = dict(self.crawler.stats.get_stats())
            await self._record(client, reason, all_stats)
        await self.database.close()  # releases the locks
        if self.ledger.owned():
            # A job directory whose run ended starts a new run next time; a stopped one resumes.
            self._save_job("running" if reason == "shutdown" else "finished")

    async def _prune(self, client: str) -> None:
        """Remove the client's history and run records older than ADCRAWLER_KEEP_DAYS; a failure
        is said and counted, and costs the run nothing (the next run prunes them)."""
        before = datetime.now(timezone.utc) - timedelta(days=self.keep_days)
        try:
            history, runs = await self.database.call(self.store.prune, client, before)
        except Exception as exc:  # noqa: BLE001 - any driver error
            self.stats.inc("prune_failed", client)
            logger.warning("Client %s: old history could not be removed (%s)", client, first_line(exc),
                           extra={"client": client})
            return
        self.stats.inc("history_pruned", client, history)
        self.stats.inc("runs_pruned", client, runs)
        if history or runs:
            logger.info("Client %s: removed %d history row(s) and %d run record(s) older than %g days", client,
                        history, runs, self.keep_days, extra={"client": client})

    def _save_job(self, state: str) -> None:
        try:
            self.job.save(state)
        except OSError as exc:  # a full disk: the run goes on, but the directory cannot say where it is
            logger.error("The job directory cannot be written (%s): this run cannot be resumed from it, and "
                         "the next crawl with it may take it for this run", exc.strerror or exc)
            self.ledger.notice("the job directory could not be written")

    async def _record(self, client: str, reason: str, all_stats: dict[str, Any]) -> None:
        row, failures = self._row(client, reason, all_stats), []

        async def attempt() -> tuple[Decision, None]:
            try:
                return Decision(Verdict.OK, "ok"), await self.database.call(self.store.record_run, row)
            except Exception as exc:  # noqa: BLE001 - said in the outcome, never a traceback
                failures.append(exc)
                return Decision(Verdict.RETRY, type(exc).__name__, detail=first_line(exc)), None

        try:  # retried like a batch: a restart while the run ends does not lose its record
            self.ledger.recorded(client, *await keep_trying(
                "database", attempt, self.policy, self.stats, client,
                patience=lambda: self.database.patience(failures[-1])))
        except GaveUp as exc:
            logger.error("Could not record the run of client %s: %s: %s", client, exc.decision.reason,
                         exc.decision.detail, extra={"client": client})
            self.ledger.fault(client, "the run record could not be written")

    def _row(self, client: str, reason: str, all_stats: dict[str, Any]) -> dict[str, Any]:
        run, own, any_client = self.ledger.run(client), key("", client), f"{PREFIX}/client/"
        limit, window = self.ledger.rate
        return {
            "run_id": self.job.run_id, "client_id": client, "started_at": run.started_at,
            "finished_at": run.last_answer_at, "outcome": str(run.outcome.name),
            "outcome_reasons": ", ".join(run.outcome.reasons) or None,
            # The stored counts (synced, rows inserted...) are counted from the run's rows by the
            # store, so a resumed or replayed run is counted right.
            "finish_reason": reason, "campaigns_seen": run.seen, "retries": self.stats.get("retries", client),
            "responses_429": self.stats.get("responses_429", client),
            "token_refreshes": self.stats.get("token_refreshes", client),
            "rate_limit": self.stats.get("rate_limit_effective", client) or limit,
            "rate_window": self.stats.get("rate_window_effective", client) or window,
            "stats": {k: v for k, v in all_stats.items() if not k.startswith(any_client) or k.startswith(own)},
        }
