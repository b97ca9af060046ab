"""Project commands (crawl, clients, runs, migrate, replay, dispatch) and what they share: settings
checked before anything starts (a bad value is one line and exit 2), a table for people to read."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

from adcrawler import logs
from adcrawler.config import BY_NAME, EXIT_CONFIG, ConfigError, resolve, value
from adcrawler.disk import PRIVATE_UMASK
from adcrawler.registry import ClientConfigError, Registry
from adcrawler.store import Store, StoreError, first_line, open_store

logger = logging.getLogger("adcrawler")


def prepare(settings: BaseSettings, log: bool = True, names: Iterable[str] = BY_NAME) -> None:
    """Check the settings ``names``, set up logging; exit 2 with one line on a bad value."""
    try:
        warnings = resolve(settings, names)
    except ConfigError as exc:
        fail(str(exc), settings)
    with suppress(ValueError):  # a password inside DATABASE_URL must never reach a log line
        logs.SECRETS.add(urlsplit(settings.get("DATABASE_URL") or "").password)
    os.umask(PRIVATE_UMASK)  # data files we create are private to this user
    # A thousand requests on the wire need more descriptors than many shells allow (1024).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if log:
        logs.configure(settings)
    for warning in warnings:
        if log:
            logger.warning("%s", warning)
        else:
            print(f"adcrawler: warning: {warning}", file=sys.stderr)


def fail(message: str, settings: BaseSettings | None = None) -> NoReturn:
    """One line (JSON when the logs are), also in a scrapyd job's log file; exit status 2."""
    line = logs.error_line(message, settings)
    print(line, file=sys.stderr, flush=True)
    log_file = settings.get("LOG_FILE") if settings is not None else None
    if log_file:  # a scrapyd job: its log is where scrapyd shows what happened
        with suppress(OSError), open(log_file, "a", encoding="utf-8") as fh:  # (on failure, stderr has it)
            fh.write(line + "\n")
    sys.exit(EXIT_CONFIG)


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(map(str, header)), *(tuple(map(str, row)) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


class OperatorCommand:
    """For a command that runs no crawl: checked settings, no log lines, a plain answer on stdout.
    A mixin (``class Command(OperatorCommand, ScrapyCommand)``): Scrapy takes every ScrapyCommand
    subclass in this package for a command."""

    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}
    reads: ClassVar[tuple[str, ...]] = ("DATABASE_URL", "ADCRAWLER_DATA_DIR", "ADCRAWLER_CLIENTS_FILE")

    settings: Any
    exitcode: int

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)  # type: ignore[misc]
        prepare(self.settings, log=False, names=self.reads)

    def registry(self) -> Registry:
        try:
            return Registry.load(value(self.settings, "ADCRAWLER_CLIENTS_FILE"))
        except ClientConfigError as exc:
            fail(str(exc), self.settings)

    def with_store(self, what: str, work: Callable[[Store], Any]) -> Any:
        """``work(store)`` on the database the settings name; on failure one line (never a
        traceback: the URL may hold a password), exit status 1, None."""
        try:
            store = open_store(value(self.settings, "DATABASE_URL"), value(self.settings, "ADCRAWLER_DATA_DIR"))
            try:
                return work(store)
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - said in one line
            reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {first_line(exc)}"
            print(f"adcrawler: cannot {what}: {reason}")
            self.exitcode = 1
            return None
