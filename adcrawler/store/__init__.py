"""Storage: one schema and the same semantics on SQLite (the embedded default) and PostgreSQL, and the one
connection a crawl opens."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import run_in_thread

from adcrawler.config import DRY_RUN, scaled, value

from .connection import SchemaBehind, StoreError, Waits, first_line
from .migrations import LATEST, Migrations
from .records import RunOrigin, RunQueries
from .writes import BatchResult, CampaignWrites, WriteResult

T = TypeVar("T")
SQLITE_FILE = "adcrawler.sqlite3"  # in ADCRAWLER_DATA_DIR when DATABASE_URL is empty
# How long a client's lease lasts unrenewed, real seconds (scaled, never below 10 s): a database
# restart shorter than this costs retries, not the run, and a killed run's clients are free after it.
LEASE = 60.0


class Store(CampaignWrites, RunQueries, Migrations):
    """A database of either backend: campaign writes, run records and migrations."""


def open_store(database_url: str | None, data_dir: str = "data", waits: Waits = Waits()) -> Store:
    """The store ``DATABASE_URL`` names (empty: the SQLite file in ``data_dir``)."""
    url = (database_url or "").strip()
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, waits)
    if not url or url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):] if url else os.path.join(data_dir, SQLITE_FILE), waits)
    raise StoreError("DATABASE_URL must start with postgresql:// or sqlite:/// (or be empty for SQLite)")


class Database:
    """The crawl's one connection: opened once (the schema checked, migrated when behind), then
    shared by the pipeline and the recorder, one call at a time, off the event loop."""

    def __init__(self, database_url: str, data_dir: str, waits: Waits = Waits(), lease: float = LEASE):
        self.database_url = database_url
        self.data_dir = data_dir
        self.waits = waits
        self.lease = lease
        self.store: Store | None = None
        self.version = 0
        self.error: BaseException | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Database:
        if crawler.settings.getbool(DRY_RUN):
            raise NotConfigured  # a dry run writes nothing
        s = crawler.settings
        # A lock wait follows the platform's clock (a test's locked table costs seconds, not minutes),
        # never below a second: processes starting together wait that long for the one migrating.
        return cls(value(s, "DATABASE_URL"), value(s, "ADCRAWLER_DATA_DIR"), Waits(lock=scaled(s, Waits.lock, 1.0)),
                   scaled(s, LEASE, 10.0))

    @staticmethod
    def of(crawler: Crawler) -> Database:
        database = crawler.get_extension(Database)
        if database is None:
            raise RuntimeError("adcrawler.store.Database must be enabled in EXTENSIONS")
        return database

    async def open(self) -> Store:
        """The store, opened on the first call; the first call's error is raised to every caller."""
        async with self._lock:
            if self.store is None and self.error is None:
                try:
                    self.store = await run_in_thread(open_store, self.database_url, self.data_dir, self.waits)
                    self.version = await run_in_thread(self.store.migrate)
                except Exception as exc:  # noqa: BLE001 - kept, and raised to each caller
                    self.error = exc
                    if self.store is not None:
                        await run_in_thread(self.store.close)
                        self.store = None
            if self.error is not None:
                raise self.error
            assert self.store is not None
            return self.store

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` (a method of the store) in a worker thread, alone on the connection."""
        async with self._lock:
            return await run_in_thread(function, *args)

    def patience(self, exc: BaseException) -> float:
        """How long to keep retrying after ``exc``: a lost connection for as long as a lease lasts
        (a restart costs retries, not a spool), any other fault (a permission, a full disk, a lock
        held) only the retry policy's few tries."""
        return self.lease if self.store is not None and self.store.cause(exc) == "connection" else 0.0

    async def close(self) -> None:
        if self.store is not None:
            await self.call(self.store.close)


__all__ = ["LATEST", "BatchResult", "Database", "RunOrigin", "SchemaBehind", "Store", "StoreError", "Waits",
           "WriteResult", "first_line", "open_store"]
