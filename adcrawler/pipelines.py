"""Batched, parameterized upserts through the crawl's one connection: a batch the database cannot take is
retried, then spooled (its cause named), and kept in memory as a last resort; with a job directory,
every item is journaled until its batch commits."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.asyncio import CallLaterResult, call_later, run_in_thread

from adcrawler.config import CONFIRM_REMOVALS, DRY_RUN, RESUME_RUNS, scaled, value
from adcrawler.disk import JobState, Journal, append_spool
from adcrawler.ledger import CLIENTS_HELD, RunLedger
from adcrawler.logs import log_failure
from adcrawler.model import CampaignItem, RejectedRecord, problem_key
from adcrawler.retry import Decision, GaveUp, RetryPolicy, Verdict, keep_trying
from adcrawler.stats import RunStats
from adcrawler.store import Database, SchemaBehind, Store, WriteResult, first_line

logger = logging.getLogger(__name__)

Item = CampaignItem | RejectedRecord
SCHEMA_BEHIND = "schema_behind"  # the crawl's finish reason when the schema is behind and may not be migrated
BATCH_SIZE = 50  # rows per transaction: many times the rows per second of one at a time (bench f)
FLUSH_INTERVAL = 5.0  # the longest a row waits in memory, real seconds (scaled)


class StorePipeline:
    def __init__(self, crawler: Crawler):
        s = crawler.settings
        if s.getbool(DRY_RUN):
            raise NotConfigured  # a dry run writes nothing (the spider says so at start)
        self.stats = RunStats(crawler)
        self.ledger = RunLedger.of(crawler)
        self.database = Database.of(crawler)
        self.flush_interval = scaled(s, FLUSH_INTERVAL)
        self.policy = RetryPolicy.from_settings(s)
        self.spool_dir = Path(value(s, "ADCRAWLER_DATA_DIR"), "spool")
        self.stopping = lambda: not crawler.engine.running  # True once the crawl is stopping (SIGTERM): no more retries
        self.removal_guard = value(s, "ADCRAWLER_REMOVAL_GUARD")
        self.confirm_removals = s.getbool(CONFIRM_REMOVALS)
        # Earlier runs whose synced campaigns this one does not sync again.
        self.resume_runs = tuple(r for r in (s.get(RESUME_RUNS) or "").split(",") if r)
        self.run_id = ""
        self.journal: Journal | None = None
        self.store: Store | None = None
        self.buffer: list[Item] = []
        self.lock = asyncio.Lock()
        self._timer: CallLaterResult | None = None
        self._timed_flush: asyncio.Future | None = None
        self.unsaved: list[Item] = []  # neither written nor spooled: tried again at close
        crawler.signals.connect(self.start_run, signal=CLIENTS_HELD)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        return cls(crawler)

    async def open_spider(self) -> None:
        try:
            self.store = await self.database.open()
        except SchemaBehind as exc:
            logger.error("%s", exc)
            raise CloseSpider(SCHEMA_BEHIND) from None
        except Exception as exc:  # noqa: BLE001 - any driver error: one line (the URL may hold a password)
            logger.error("Cannot open the database: %s", first_line(exc))
            raise CloseSpider("database_unavailable") from None
        logger.info("Storing into %s (schema version %d)", self.store.dialect, self.database.version)

    async def start_run(self, job: JobState, clients: list[str]) -> None:
        """Write for ``job`` from now on; a resumed run stores what its interrupted attempt journaled,
        and tells the ledger what it (or a run named by ``-a resume``) stored (sent by the recorder
        once it holds the clients)."""
        self.run_id, self.journal = job.run_id, job.journal()
        if self.journal is not None:
            if pending := self.journal.pending():
                logger.info("Resuming run %s: storing %d journaled records first", self.run_id, len(pending))
                await self._write(pending, count=False)  # counted by the attempt that fetched them
            self._journal(Journal.rewrite, [])
        earlier = [*self.resume_runs, *([self.run_id] if job.resumed else [])]
        if earlier:
            for client in clients:
                self.ledger.resume(client, await self.database.call(self.store.done_campaigns, earlier, client))

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, (CampaignItem, RejectedRecord)):  # not ours to store
            return item
        if not self.buffer:
            self._timer = call_later(self.flush_interval, self._flush_due)
        self.buffer.append(item)  # first: a journal that cannot be written loses nothing
        # On the event loop on purpose: one short write into the OS page cache (no fsync), in
        # item order, before a flush rewrites the journal.
        self._journal(Journal.append, item)
        if len(self.buffer) >= BATCH_SIZE:
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
            for client, count in sorted(Counter(item.client_id for item in self.unsaved).items()):
                self.ledger.fault(client, f"{count} records could be neither written nor spooled")
        self._journal(Journal.close)
        await self._after_listings()

    async def _after_listings(self) -> None:
        """Once every row is written: the campaigns each listing says are gone, or back, and the
        fields that appeared or vanished since the last complete listing."""
        assert self.store is not None
        for client, (listed, complete) in self.ledger.listings().items():
            try:
                removals = await self.database.call(self.store.mark_removed, client, listed, complete,
                                                    self.removal_guard, self.confirm_removals)
            except Exception as exc:  # noqa: BLE001 - any driver error: the client says it
                self.ledger.fault(client, f"removed campaigns could not be marked ({first_line(exc)})")
                continue
            self.ledger.removed(client, removals)
            if complete:
                try:
                    before = await self.database.call(self.store.swap_fields, client, *self.ledger.fields(client))
                except Exception as exc:  # noqa: BLE001 - any driver error: the client says it
                    self.ledger.fault(client, f"the records' fields could not be recorded ({first_line(exc)})")
                    continue
                self.ledger.fields_changed(client, before)

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
        assert self.store is not None
        store, failures = self.store, []

        async def attempt() -> tuple[Decision, WriteResult | None]:
            try:
                return Decision(Verdict.OK, "ok"), await self.database.call(store.write, self.run_id, batch)
            except Exception as exc:  # noqa: BLE001 - a fault of the database (rows it refuses are quarantined)
                failures.append(exc)
                return Decision(Verdict.RETRY, type(exc).__name__, detail=first_line(exc)), None

        try:
            written = await keep_trying("database", attempt, self.policy, self.stats, stopping=self.stopping,
                                        patience=lambda: self.database.patience(failures[-1]))
        except GaveUp:
            await self._spool(batch, failures[-1])
            return
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

    async def _spool(self, batch: list[Item], exc: BaseException) -> None:
        try:
            paths = await run_in_thread(append_spool, self.spool_dir, self.run_id, batch)
        except OSError as spool_error:
            # Nowhere to keep them: they stay in memory, and nothing more is fetched for their
            # clients, so that what is lost at worst is this.
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
        logger.error("Could not write a batch (%s: %s): %d records kept in %s; replay them with: scrapy replay %s",
                     type(exc).__name__, first_line(exc), len(batch), shown, shown)
