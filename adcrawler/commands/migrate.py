"""``scrapy migrate``: apply the migrations the database lacks (the step a database's owner runs
when the crawl's role may not), and print the version before and after; exit 1 with one line
when the database cannot be used."""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand

from adcrawler.store import LATEST

from . import OperatorCommand


class Command(OperatorCommand, ScrapyCommand):
    def short_desc(self) -> str:
        return "Apply the database migrations this database lacks"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        done = self.with_store("migrate", lambda store: (store.dialect, store.version(), store.migrate()))
        if done is None:
            return
        dialect, before, after = done
        if before == after:
            print(f"{dialect}: schema version {after}, up to date (latest {LATEST})")
        else:
            print(f"{dialect}: schema version {before} -> {after}")
