"""``scrapy migrate``: bring the database's schema up to date, and nothing else.

Applies the migrations the database lacks (serialised, like a crawl's start)
and prints the version before and after. Exit status 1 when the database cannot
be used, with one line saying why.

Settings: DATABASE_URL, ADCRAWLER_SQLITE_PATH, ADCRAWLER_DB_STATEMENT_TIMEOUT,
ADCRAWLER_DB_LOCK_TIMEOUT.
"""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand

from adcrawler.store import Store, schema

from . import OperatorCommand


class Command(OperatorCommand, ScrapyCommand):
    def short_desc(self) -> str:
        return "Apply the database migrations this database lacks"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        def migrate(store: Store) -> tuple[str, int, int]:
            return store.dialect, store.version(), store.migrate()

        done = self.with_store("migrate", migrate)
        if done is None:
            return
        dialect, before, after = done
        if before == after:
            print(f"{dialect}: schema version {after}, up to date (latest {schema.LATEST})")
        else:
            print(f"{dialect}: schema version {before} -> {after}")
