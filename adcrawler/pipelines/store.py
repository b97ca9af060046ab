"""Batched, parameterized upserts of campaign items (and quarantined records).

Items are buffered and written ``ADCRAWLER_DB_BATCH_SIZE`` at a time, or when
the oldest has waited ``ADCRAWLER_DB_FLUSH_INTERVAL`` seconds, in one
transaction per batch, in a worker thread so the reactor never blocks. A batch
that fails because the database is unreachable is retried with backoff
(``ADCRAWLER_DB_RETRIES``, ``ADCRAWLER_DB_RETRY_BACKOFF_*``); if the database
stays down the batch is appended to a spool file in ``ADCRAWLER_SPOOL_DIR``
(replay it with ``python -m adcrawler.replay``) and the run ends non-zero.

It also owns the run's bookkeeping in the database: the lock per client
(a second run of the same client closes at once with ``client_locked``), the
journal and run id of a resumable run (see :mod:`adcrawler.jobdir`), and one
``sync_runs`` row per client at the end.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, ADCRAWLER_DB_BATCH_SIZE,
ADCRAWLER_DB_FLUSH_INTERVAL, ADCRAWLER_DB_RETRIES, ADCRAWLER_DB_RETRY_BACKOFF_BASE,
ADCRAWLER_DB_RETRY_BACKOFF_MAX, ADCRAWLER_SPOOL_DIR, JOBDIR.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from scrapy import signals
from scrapy.exceptions import CloseSpider
from scrapy.utils.asyncio import run_in_thread, sleep

from adcrawler.backoff import backoff_delay
from adcrawler.items import CampaignItem, RejectedRecord
from adcrawler.jobdir import Journal, run_id_for
from adcrawler.settings_check import positive_float, positive_int
from adcrawler.spool import append_spool
from adcrawler.stats import RunStats
from adcrawler.store import BatchResult, Store, StoreError, first_line, open_store

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

Item = CampaignItem | RejectedRecord


class StorePipeline:
    def __init__(self, crawler: Crawler, database_url: str, sqlite_path: str, batch_size: int,
                 flush_interval: float, retries: int, backoff_base: float, backoff_cap: float,
                 spool_dir: str, jobdir: str | None):
        self.crawler = crawler
        self.database_url = database_url
        self.sqlite_path = sqlite_path
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.spool_dir = Path(spool_dir)
        self.stats = RunStats(crawler)
        self.run_id = run_id_for(jobdir)
        self.journal = Journal(jobdir, self.run_id) if jobdir else None
        self.started_at = datetime.now(timezone.utc)
        self.store: Store | None = None
        self.buffer: list[Item] = []
        self.oldest = 0.0
        self.lock = asyncio.Lock()
        # Campaigns this run already stored as synced, per client (a resumed run skips them).
        self.done: dict[str, set[str]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StorePipeline":
        s = crawler.settings
        pipeline = cls(
            crawler,
            database_url=s.get("DATABASE_URL") or "",
            sqlite_path=s.get("ADCRAWLER_SQLITE_PATH"),
            batch_size=positive_int(s, "ADCRAWLER_DB_BATCH_SIZE"),
            flush_interval=positive_float(s, "ADCRAWLER_DB_FLUSH_INTERVAL"),
            retries=positive_int(s, "ADCRAWLER_DB_RETRIES", allow_zero=True),
            backoff_base=positive_float(s, "ADCRAWLER_DB_RETRY_BACKOFF_BASE"),
            backoff_cap=positive_float(s, "ADCRAWLER_DB_RETRY_BACKOFF_MAX"),
            spool_dir=s.get("ADCRAWLER_SPOOL_DIR"),
            jobdir=s.get("JOBDIR") or None,
        )
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    async def open_spider(self) -> None:
        self.stats.set("run_id", self.run_id)
        try:
            self.store = await run_in_thread(open_store, self.database_url, self.sqlite_path)
            version = await run_in_thread(self.store.migrate)
        except StoreError as exc:
            self._cannot_open(exc)
        except Exception as exc:
            if self.store is None or not isinstance(exc, self.store.transient):
                raise
            self._cannot_open(exc)
        logger.info("Storing into %s (schema version %d), run %s", self.store.dialect, version, self.run_id)
        clients = list(self.crawler.spider.clients)
        for client in clients:
            if not await run_in_thread(self.store.try_lock, client):
                logger.error("Client %s is already being synced by another run against this database; "
                             "not starting a second one", client)
                raise CloseSpider("client_locked")
        if self.journal is not None:
            pending = self.journal.pending()
            if pending:
                logger.info("Resuming run %s: storing %d journaled records first", self.run_id, len(pending))
                await self._write(pending, count=False)  # counted by the run that fetched them
                self.journal.rewrite([])
            for client in clients:
                self.done[client] = await run_in_thread(self.store.done_campaigns, self.run_id, client)

    def _cannot_open(self, exc: BaseException) -> NoReturn:
        logger.error("Cannot open the database: %s", first_line(exc))
        raise CloseSpider("database_unavailable") from None

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, (CampaignItem, RejectedRecord)):
            return item
        if self.journal is not None:
            # On the reactor thread on purpose: one short write into the OS page
            # cache (no fsync), and it must happen in item order, before the
            # journal is rewritten by a flush.
            self.journal.append(item)
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append(item)
        if len(self.buffer) >= self.batch_size or time.monotonic() - self.oldest >= self.flush_interval:
            await self.flush()
        return item

    async def close_spider(self) -> None:
        if self.store is not None:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.buffer = self.buffer, []
            if not batch:
                return
            await self._write(batch)
            if self.journal is not None:
                self.journal.rewrite(self.buffer)  # what arrived meanwhile is still pending

    async def _write(self, batch: list[Item], count: bool = True) -> None:
        store = self.store
        assert store is not None
        for attempt in range(1, self.retries + 2):
            try:
                results: dict[str, BatchResult] = await run_in_thread(store.write_batch, self.run_id, batch)
                break
            except Exception as exc:  # noqa: BLE001 - a batch is never dropped
                transient = isinstance(exc, store.transient)
                if not transient or attempt > self.retries:
                    # Out of retries, or an error retrying will not cure
                    # (a value the database refuses): keep the batch on disk.
                    await self._spool(batch, exc)
                    return
                self.stats.inc("db_retries")
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                logger.warning("Database write failed (%s); retry %d/%d in %.1fs",
                               first_line(exc), attempt, self.retries, delay)
                await sleep(delay)
                try:
                    await run_in_thread(store.reconnect)
                except store.transient:
                    pass  # still down: the next attempt says so
        self.stats.inc("db_batches")
        if not count:
            return
        for item in batch:
            if isinstance(item, CampaignItem):
                self.stats.inc("campaigns_stored", item.client_id)
        for client, result in results.items():
            for name in ("inserted", "updated", "unchanged"):
                self.stats.inc(f"rows_{name}", client, getattr(result, name))

    async def _spool(self, batch: list[Item], exc: BaseException) -> None:
        path = await run_in_thread(append_spool, self.spool_dir, self.run_id, batch)
        for item in batch:
            self.stats.inc("rows_spooled", item.client_id)
        logger.error("Could not write a batch (%s: %s): %d records kept in %s; "
                     "replay them with: python -m adcrawler.replay %s",
                     type(exc).__name__, first_line(exc), len(batch), path, path)

    async def spider_closed(self, spider: Any, reason: str) -> None:
        if self.store is None:
            return
        finished = datetime.now(timezone.utc)
        all_stats = self.crawler.stats.get_stats()
        for client in spider.clients:
            def g(name: str, client: str = client) -> Any:
                return self.stats.get(name, client)

            try:
                # From the database, so a resumed run counts its earlier attempts too.
                synced, failed = await run_in_thread(self.store.run_counts, self.run_id, client)
            except self.store.transient:
                synced, failed = g("campaigns_synced"), g("campaigns_sync_failed")
            row = {
                "run_id": self.run_id, "client_id": client, "started_at": self.started_at,
                "finished_at": finished, "outcome": g("outcome") or None, "finish_reason": reason,
                "campaigns_seen": g("campaigns_seen"), "campaigns_synced": synced,
                "campaigns_failed": failed, "rows_inserted": g("rows_inserted"),
                "rows_updated": g("rows_updated"), "rows_unchanged": g("rows_unchanged"),
                "records_rejected": g("records_rejected"), "retries": g("retries"),
                "responses_429": g("responses_429"), "token_refreshes": g("token_refreshes"),
                "stats": {k: v for k, v in all_stats.items()
                          if not k.startswith("adcrawler/client/") or k.startswith(f"adcrawler/client/{client}/")},
            }
            try:
                await run_in_thread(self.store.record_run, row)
            except self.store.transient as exc:
                logger.error("Could not record the run of client %s: %s", client, first_line(exc))
        if self.journal is not None:
            self.journal.close()
        await run_in_thread(self.store.close)

