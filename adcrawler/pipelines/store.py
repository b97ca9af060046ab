"""Batched, parameterized upserts of campaign items (and quarantined records).

Items are buffered and written ``ADCRAWLER_DB_BATCH_SIZE`` at a time, or when
the oldest has waited ``ADCRAWLER_DB_FLUSH_INTERVAL`` seconds, in one
transaction per batch, in a worker thread so the reactor never blocks. A batch
that fails because the database is unreachable is retried with backoff
(``ADCRAWLER_DB_RETRIES``); if the database stays down the batch is appended to
a spool file in ``ADCRAWLER_SPOOL_DIR`` (replay it with
``python -m adcrawler.replay``) and the run ends non-zero. Nothing fetched is lost.

At the end of the run it writes one ``sync_runs`` row per client.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, ADCRAWLER_DB_BATCH_SIZE,
ADCRAWLER_DB_FLUSH_INTERVAL, ADCRAWLER_DB_RETRIES, ADCRAWLER_RETRY_BACKOFF_BASE,
ADCRAWLER_RETRY_BACKOFF_MAX, ADCRAWLER_SPOOL_DIR.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.asyncio import run_in_thread, sleep

from adcrawler.backoff import backoff_delay
from adcrawler.items import CampaignItem, RejectedRecord
from adcrawler.settings_check import positive_float, positive_int
from adcrawler.spool import append_spool
from adcrawler.stats import RunStats
from adcrawler.store import BatchResult, Store, open_store

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class StorePipeline:
    def __init__(self, crawler: Crawler, database_url: str, sqlite_path: str, batch_size: int,
                 flush_interval: float, retries: int, backoff_base: float, backoff_cap: float, spool_dir: str):
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
        self.run_id = uuid.uuid4().hex
        self.started_at = datetime.now(timezone.utc)
        self.store: Store | None = None
        self.buffer: list[CampaignItem | RejectedRecord] = []
        self.oldest = 0.0
        self.lock = asyncio.Lock()

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
            backoff_base=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_BASE"),
            backoff_cap=positive_float(s, "ADCRAWLER_RETRY_BACKOFF_MAX"),
            spool_dir=s.get("ADCRAWLER_SPOOL_DIR"),
        )
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    async def open_spider(self) -> None:
        self.stats.set("run_id", self.run_id)
        self.store = await run_in_thread(open_store, self.database_url, self.sqlite_path)
        version = await run_in_thread(self.store.migrate)
        logger.info("Storing into %s (schema version %d), run %s", self.store.dialect, version, self.run_id)

    async def process_item(self, item: Any) -> Any:
        if not isinstance(item, (CampaignItem, RejectedRecord)):
            return item
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append(item)
        if len(self.buffer) >= self.batch_size or time.monotonic() - self.oldest >= self.flush_interval:
            await self.flush()
        return item

    async def close_spider(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.buffer = self.buffer, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[CampaignItem | RejectedRecord]) -> None:
        assert self.store is not None
        for attempt in range(1, self.retries + 2):
            try:
                results: dict[str, BatchResult] = await run_in_thread(self.store.write_batch, self.run_id, batch)
                break
            except self.store.transient as exc:
                self.stats.inc("db_retries")
                if attempt > self.retries:
                    self._spool(batch, exc)
                    return
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                logger.warning("Database write failed (%s); retry %d/%d in %.1fs",
                               str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                               attempt, self.retries, delay)
                await sleep(delay)
                try:
                    await run_in_thread(self.store.reconnect)
                except self.store.transient:
                    pass  # still down: the next attempt says so
        self.stats.inc("db_batches")
        for item in batch:
            if isinstance(item, CampaignItem):
                self.stats.inc("campaigns_stored", item.client_id)
        for client, result in results.items():
            for name in ("inserted", "updated", "unchanged"):
                self.stats.inc(f"rows_{name}", client, getattr(result, name))

    def _spool(self, batch: list[Any], exc: BaseException) -> None:
        path = append_spool(self.spool_dir, self.run_id, batch)
        for item in batch:
            self.stats.inc("rows_spooled", item.client_id)
        logger.error("Database unreachable after %d retries (%s): %d records kept in %s; "
                     "replay with: python -m adcrawler.replay %s",
                     self.retries, type(exc).__name__, len(batch), path, path)

    async def spider_closed(self, spider: Any, reason: str) -> None:
        if self.store is None:
            return
        finished = datetime.now(timezone.utc)
        all_stats = self.crawler.stats.get_stats()
        for client in spider.clients:
            outcome = self.stats.get("outcome", client)
            g = lambda name: self.stats.get(name, client)  # noqa: E731
            row = {
                "run_id": self.run_id, "client_id": client, "started_at": self.started_at,
                "finished_at": finished, "outcome": outcome, "finish_reason": reason,
                "campaigns_seen": g("campaigns_seen"), "campaigns_synced": g("campaigns_synced"),
                "campaigns_failed": g("campaigns_sync_failed"), "rows_inserted": g("rows_inserted"),
                "rows_updated": g("rows_updated"), "rows_unchanged": g("rows_unchanged"),
                "records_rejected": g("records_rejected"), "retries": g("retries"),
                "responses_429": g("responses_429"), "token_refreshes": g("token_refreshes"),
                "stats": {k: v for k, v in all_stats.items()
                          if not k.startswith("adcrawler/client/") or k.startswith(f"adcrawler/client/{client}/")},
            }
            try:
                await run_in_thread(self.store.record_run, row)
            except self.store.transient as exc:
                logger.error("Could not record the run of client %s: %s", client, type(exc).__name__)
        await run_in_thread(self.store.close)
