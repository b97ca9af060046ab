"""Project commands: ``crawl`` (checked settings, true exit status), ``settings``,
and the operator's ``clients``, ``runs`` and ``migrate``.

Both check every setting before anything starts: a bad value prints one line
naming it and exits with status 2, and values given with ``-s`` under our
names drive Scrapy's own settings too (see :mod:`adcrawler.config`).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy.settings import BaseSettings

from adcrawler import logs, redaction
from adcrawler.config import EXIT_CONFIG, ConfigError, resolve
from adcrawler.files import PRIVATE_UMASK

if TYPE_CHECKING:
    from adcrawler.store import Store

logger = logging.getLogger("adcrawler")


def prepare(settings: BaseSettings, log: bool = True) -> None:
    """Check and resolve ``settings``, set up logging; exit 2 with one line on a bad value."""
    try:
        warnings = resolve(settings)
    except ConfigError as exc:
        fail(str(exc), settings)
    _register_secrets(settings)
    os.umask(PRIVATE_UMASK)  # data files we create are private to this user
    _raise_open_files_limit()
    if log:
        logs.configure(settings)
        for warning in warnings:
            logger.warning("%s", warning)


def fail(message: str, settings: BaseSettings | None = None) -> None:
    line = logs.error_line(message, settings)
    print(line, file=sys.stderr, flush=True)
    log_file = settings.get("LOG_FILE") if settings is not None else None
    if log_file:  # a scrapyd job: its log is where scrapyd and ScrapydWeb show what happened
        try:
            with open(log_file, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # stderr has it
    sys.exit(EXIT_CONFIG)


def _raise_open_files_limit() -> None:
    """A thousand requests on the wire need more descriptors than many shells allow (1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _register_secrets(settings: BaseSettings) -> None:
    """A password inside DATABASE_URL must never reach a log line (Scrapy logs overridden settings)."""
    from urllib.parse import urlsplit

    url = settings.get("DATABASE_URL") or ""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    redaction.SECRETS.add(password)


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """Rows as aligned columns under a header, for a person to read."""
    cells = [tuple(map(str, header)), *(tuple(map(str, row)) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells)


class OperatorCommand:
    """For a command that runs no crawl: checked settings, no log lines, a plain
    answer on stdout. A mixin (``class Command(OperatorCommand, ScrapyCommand)``):
    Scrapy takes every ScrapyCommand subclass in this package for a command."""

    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    settings: Any
    exitcode: int

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)  # type: ignore[misc]
        assert self.settings is not None
        prepare(self.settings, log=False)

    def with_store(self, what: str, work: Callable[[Store], Any]) -> Any:
        """``work(store)`` on the database the settings name; on failure one line
        (never a traceback: the URL may hold a password), exit status 1, None."""
        from adcrawler.config import value
        from adcrawler.store import StoreError, first_line, open_store, waits_of

        s = self.settings
        try:
            store = open_store(value(s, "DATABASE_URL"), value(s, "ADCRAWLER_SQLITE_PATH"), waits_of(s))
            try:
                return work(store)
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - said in one line
            reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {first_line(exc)}"
            print(f"adcrawler: cannot {what}: {reason}")
            self.exitcode = 1
            return None
