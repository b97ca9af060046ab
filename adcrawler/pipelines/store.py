"""Batched, parameterized upserts of campaign items and quarantined records.

Items are buffered and written ``ADCRAWLER_DB_BATCH_SIZE`` at a time, or when
the oldest has waited ``ADCRAWLER_DB_FLUSH_INTERVAL`` seconds (a timer, so a
quiet spell does not keep rows in memory), in one transaction per batch, in a
worker thread so the event loop never blocks.

- A row the database refuses for good (a value out of a column's range) is
  found by halving the batch, quarantined with the database's reason, and the
  rest of the batch commits (see ``Store.write``).
- Any other failure is a fault of the database, not of the rows (unreachable,
  a statement or lock timeout, permission denied, a full disk): the batch is
  retried as the retry policy says (``ADCRAWLER_DB_RETRIES``,
  ``ADCRAWLER_DB_RETRY_BACKOFF_*``; see :mod:`adcrawler.retrying`) with a
  reconnect, never while the crawl is being stopped; if it still fails the
  batch is appended to a spool file in ``ADCRAWLER_SPOOL_DIR`` (replay it with
  ``python -m adcrawler.replay``) and the client's outcome says so. When the
  spool cannot be written either, the batch stays in memory for one more try at
  close and its clients are interrupted: nothing more is fetched for them.
- Every statement is bounded (``ADCRAWLER_DB_STATEMENT_TIMEOUT``,
  ``ADCRAWLER_DB_LOCK_TIMEOUT``), so no write, the flush at close included,
  waits for ever.

What was stored, quarantined or spooled is recorded in the run ledger, which
the outcome is decided from. Items are read through ``ItemAdapter``.

With a job directory, every item is also journaled until its batch commits
(see :mod:`adcrawler.jobdir`). When the run records hold their clients' locks
(the ``clients_held`` signal), a resumed run stores the journal first and tells
the ledger what its interrupted attempt had stored.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, ADCRAWLER_DB_BATCH_SIZE,
ADCRAWLER_DB_FLUSH_INTERVAL, ADCRAWLER_DB_STATEMENT_TIMEOUT, ADCRAWLER_DB_LOCK_TIMEOUT,
ADCRAWLER_SPOOL_DIR, and the retry settings read
by :class:`~adcrawler.retrying.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.asyncio import CallLaterResult, call_later, run_in_thread, sleep

from adcrawler.answers import Decision, Verdict
from adcrawler.config import value
from adcrawler.items import CampaignItem, RejectedRecord, problem_key
from adcrawler.jobdir import JobState, Journal
from adcrawler.ledger import CLIENTS_HELD, RunLedger
from adcrawler.logs import log_failure
from adcrawler.retrying import RetryPolicy
from adcrawler.spool import append_spool
from adcrawler.stats import RunStats
from adcrawler.store import SchemaBehind, Store, StoreError, Waits, WriteResult, first_line, open_store, waits_of

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

Item = CampaignItem | RejectedRecord
SCHEMA_BEHIND = "schema_behind"  # the crawl's finish reason when the schema is behind and may not be migrated


class StorePipeline:
    def __init__(self, stats: RunStats, ledger: RunLedger, database_url: str, sqlite_path: str, batch_size: int,
                 flush_interval: float, policy: RetryPolicy, spool_dir: str, waits: Waits = Waits(),
                 stopping: Callable[[], bool] = lambda: False):
        self.stats = stats
        self.ledger = ledger
        self.database_url = database_url
        self.sqlite_path = sqlite_path
        self.waits = waits
        self.stopping = stopping  # True once the crawl is being stopped (SIGTERM): no more retries
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.policy = policy
        self.spool_dir = Path(spool_dir)
        self.run_id = ""
        self.journal: Journal | None = None
        self.store: Store | None = None
        self.buffer: list[Item] = []
        self.lock = asyncio.Lock()
        self._timer: CallLaterResult | None = None
        self._timed_flush: asyncio.Future | None = None
        self.unsaved: list[Item] = []  # neither written nor spooled: tried again at close

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StorePipeline":
        s = crawler.settings
        if value(s, "ADCRAWLER_DRY_RUN"):
            raise NotConfigured  # a dry run writes nothing (the spider says so at start)
        pipeline = cls(RunStats(crawler), RunLedger.of(crawler), value(s, "DATABASE_URL"),
                       value(s, "ADCRAWLER_SQLITE_PATH"), value(s, "ADCRAWLER_DB_BATCH_SIZE"),
                       value(s, "ADCRAWLER_DB_FLUSH_INTERVAL"), RetryPolicy.from_settings(s),
                       value(s, "ADCRAWLER_SPOOL_DIR"), waits_of(s), lambda: not crawler.engine.running)
        crawler.signals.connect(pipeline.start_run, signal=CLIENTS_HELD)
        return pipeline

    async def open_spider(self) -> None:
        try:
            self.store = await run_in_thread(open_store, self.database_url, self.sqlite_path, self.waits)
            version = await run_in_thread(self.store.migrate)
        except SchemaBehind as exc:
            logger.error("%s", exc)
            raise CloseSpider(SCHEMA_BEHIND) from None
        except StoreError as exc:
            self._cannot_open(exc)
        except Exception as exc:
            if self.store is None or not isinstance(exc, self.store.transient):
                raise
            self._cannot_open(exc)
        logger.info("Storing into %s (schema version %d)", self.store.dialect, version)

    def _cannot_open(self, exc: BaseException) -> NoReturn:
        logger.error("Cannot open the database: %s", first_line(exc))
        raise CloseSpider("database_unavailable") from None

    async def start_run(self, job: JobState, clients: list[str]) -> None:
        """Write for ``job`` from now on; if it resumes an interrupted attempt, store
        what that attempt journaled and tell the ledger what it stored. Sent by the
        run records (``clients_held``) once the run holds its clients' locks."""
        if self.store is None:
            return
        self.run_id, self.journal = job.run_id, job.journal()
        if self.journal is not None:
            pending = self.journal.pending()
            if pending:
                logger.info("Resuming run %s: storing %d journaled records first", self.run_id, len(pending))
                await self._write(pending, count=False)  # counted by the attempt that fetched them
            self._journal(Journal.rewrite, [])
        if job.resumed:
            for client in clients:
                done = await run_in_thread(self.store.done_campaigns, self.run_id, client)
                self.ledger.run(client).resumable = done

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, (CampaignItem, RejectedRecord)):  # not ours to store
            return item
        if not self.buffer:
            self._timer = call_later(self.flush_interval, self._flush_due)
        self.buffer.append(item)  # first: a journal that cannot be written loses nothing
        # On the event loop on purpose: one short write into the OS page cache (no
        # fsync), and it must happen in item order, before a flush rewrites the journal.
        self._journal(Journal.append, item)
        if len(self.buffer) >= self.batch_size:
            await self.flush()
        return item

    def _journal(self, operation: Callable[..., None], *args: Any) -> None:
        """A journal operation; a journal that cannot be written (a full disk) is given up: it only
        serves a resume, and every item still goes to the database or the spool."""
        if self.journal is None:
            return
        try:
            operation(self.journal, *args)
        except OSError as exc:
            self.journal = None
            self.stats.inc("journal_failed")
            logger.warning("The job directory's journal cannot be written (%s); going on without it: every "
                           "record still goes to the database or the spool, and a resumed run lists again",
                           exc.strerror or exc)

    def _flush_due(self) -> None:
        self._timer = None
        # Kept: the event loop holds only a weak reference to tasks.
        self._timed_flush = asyncio.ensure_future(self.flush())
        self._timed_flush.add_done_callback(log_failure)

    async def close_spider(self) -> None:
        if self.store is None:
            return
        await self.flush()
        if self.unsaved:  # one last try, database first, then the spool
            unsaved, self.unsaved = self.unsaved, []
            await self._write(unsaved)
            for client in sorted({item.client_id for item in self.unsaved}):
                count = sum(1 for item in self.unsaved if item.client_id == client)
                self.ledger.fault(client, f"{count} records could be neither written nor spooled")
        self._journal(Journal.close)
        await run_in_thread(self.store.close)

    async def flush(self) -> None:
        async with self.lock:
            batch, self.buffer = self.buffer, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not batch:
                return
            await self._write(batch)
            self._journal(Journal.rewrite, self.buffer)  # what arrived meanwhile is still pending
            if self.buffer and self._timer is None:
                self._timer = call_later(self.flush_interval, self._flush_due)

    async def _write(self, batch: list[Item], count: bool = True) -> None:
        store = self.store
        assert store is not None
        for attempt in itertools.count(1):
            try:
                written: WriteResult = await run_in_thread(store.write, self.run_id, batch)
                break
            except Exception as exc:  # noqa: BLE001 - a fault of the database (rows it refuses are quarantined)
                # Unreachable, timed out, permission denied, disk full: retried,
                # then kept on disk; never retried while the crawl is being stopped.
                decision = Decision(Verdict.RETRY, type(exc).__name__)
                delay = None if self.stopping() else self.policy.delay("database", decision, attempt)
                if delay is None:
                    await self._spool(batch, exc)
                    await run_in_thread(store.close)  # the next batch starts from a new connection
                    return
                self.policy.count(self.stats, "database", decision, None)
                logger.warning("Database write failed (%s: %s); retry %d/%d in %.1fs", type(exc).__name__,
                               first_line(exc), attempt, self.policy.limits["database"], delay)
                await self._pause(delay)
                try:
                    await run_in_thread(store.reconnect)
                except Exception:  # noqa: BLE001 - still down: the next attempt says so
                    pass
        self.stats.inc("db_batches")
        for item, reason in written.refused:
            logger.warning("Client %s: the database refused campaign %s; quarantined: %s", item.client_id,
                           getattr(item, "campaign_id", "?"), reason, extra={"client": item.client_id})
            self.stats.inc("rows_quarantined", item.client_id)
            if count:
                self.ledger.quarantined(item.client_id, problem_key(getattr(item, "campaign_id", None), "", reason))
        if count:
            for client, result in written.clients.items():
                for name in ("inserted", "updated", "unchanged"):
                    self.stats.inc(f"rows_{name}", client, getattr(result, name))
            for item in written.stored:
                self.ledger.stored(item)

    async def _pause(self, seconds: float) -> None:
        """Wait before a retry, but no longer once the crawl is being stopped."""
        end = time.monotonic() + seconds
        while not self.stopping() and (left := end - time.monotonic()) > 0:
            await sleep(min(left, 0.25))

    async def _spool(self, batch: list[Item], exc: BaseException) -> None:
        try:
            paths = await run_in_thread(append_spool, self.spool_dir, self.run_id, batch)
        except OSError as spool_error:
            # Nowhere to keep them: they stay in memory, and nothing more is
            # fetched for their clients, so that what is lost at worst is this.
            self.unsaved.extend(batch)
            for client in sorted({item.client_id for item in batch}):
                self.ledger.interrupt(client, "the database and the spool are both unavailable")
            logger.error("Could not write a batch (%s: %s) nor spool it (%s): %d records kept in memory; "
                         "nothing more is fetched for their clients", type(exc).__name__, first_line(exc),
                         spool_error, len(batch))
            return
        cause = self.store.cause(exc)
        for item in batch:
            self.ledger.spooled(item.client_id, cause)
        shown = " ".join(map(str, paths))
        logger.error("Could not write a batch (%s: %s): %d records kept in %s; "
                     "replay them with: python -m adcrawler.replay %s",
                     type(exc).__name__, first_line(exc), len(batch), shown, shown)
