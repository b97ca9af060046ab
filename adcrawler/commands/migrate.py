"""``scrapy migrate``: bring the database's schema up to date, and nothing else.

Applies the migrations the database lacks (serialised, like a crawl's start)
and prints the version before and after. Exit status 1 when the database cannot
be used, with one line saying why.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, ADCRAWLER_DB_STATEMENT_TIMEOUT,
ADCRAWLER_DB_LOCK_TIMEOUT.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand

from adcrawler.config import value
from adcrawler.store import StoreError, first_line, open_store, schema, waits_of

from . import prepare


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def short_desc(self) -> str:
        return "Apply the database migrations this database lacks"

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        prepare(self.settings, log=False)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        s = self.settings
        try:
            store = open_store(value(s, "DATABASE_URL"), value(s, "ADCRAWLER_SQLITE_PATH"), waits_of(s))
            try:
                before = store.version()
                after = store.migrate()
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback (the URL may hold a password)
            reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {first_line(exc)}"
            print(f"adcrawler: cannot migrate: {reason}")
            self.exitcode = 1
            return
        if before == after:
            print(f"{store.dialect}: schema version {after}, up to date (latest {schema.LATEST})")
        else:
            print(f"{store.dialect}: schema version {before} -> {after}")
