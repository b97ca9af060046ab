"""Log output: one root handler, text or JSON from the first line; what the platform sends escaped and
secrets redacted before anything is formatted; Scrapy's start-up inventory left out above DEBUG."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scrapy.settings import BaseSettings

from adcrawler.config import value

_context: dict[str, str | None] = {"run_id": None}
_handler: logging.Handler | None = None


class Secrets:
    """Every secret read so far (passwords, Basic headers, tokens): registered as soon as it is read."""

    MARK = "[REDACTED]"
    MIN_LEN = 4  # shorter strings would redact ordinary words

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= self.MIN_LEN)

    def redact(self, text: str) -> str:
        for secret in sorted(self._values, key=len, reverse=True):  # a secret holding another: whole
            text = text.replace(secret, self.MARK)
        return text


SECRETS = Secrets()
# What could end a line, move the cursor or turn text around on a terminal: C0 and C1 controls,
# line and paragraph separators, bidirectional overrides. Shown escaped (\n, \x1b, \u2028).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class RedactingFilter(logging.Filter):
    """A record's arguments escaped (they carry what the platform sent; the template is ours), then
    its message and traceback redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(escape(str(a)) if isinstance(a, (str, BaseException)) else a for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is still logged, unformatted
            message = str(record.msg)
        record.msg, record.args = SECRETS.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SECRETS.redact(record.exc_text)
            record.exc_info = None  # formatters would print the unredacted original
        return True


def redact_everywhere() -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def set_run_id(run_id: str) -> None:
    _context["run_id"] = run_id


def _json(created: float, level: str, name: str, message: str, **more: Any) -> str:
    return json.dumps({"time": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
                       "level": level, "logger": name, "message": message, "run_id": _context["run_id"],
                       **{k: v for k, v in more.items() if v}}, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # The redacting filter has formatted the message and the traceback (exc_text) already.
        return _json(record.created, record.levelname, record.name, record.getMessage(),
                     client=getattr(record, "client", None), exception=record.exc_text)


class ConsoleFilter(logging.Filter):
    """Leaves out Scrapy's start-up inventory (versions, components, overridden settings) above DEBUG."""

    INVENTORY = ("Versions:", "Enabled addons:", "Enabled extensions:", "Enabled downloader middlewares:",
                 "Enabled spider middlewares:", "Enabled item pipelines:", "Overridden settings:")

    def filter(self, record: logging.LogRecord) -> bool:
        # After the redacting filter: the message is formatted already.
        return not (record.name.startswith("scrapy.") and record.levelno == logging.INFO
                    and str(record.msg).startswith(self.INVENTORY))


def configure(settings: BaseSettings) -> None:
    """Install the root handler these settings describe (replacing ours, if any)."""
    global _handler  # noqa: PLW0603 - one root handler per process
    handler: logging.Handler
    if not settings.getbool("LOG_ENABLED"):
        handler = logging.NullHandler()
    elif settings.get("LOG_FILE"):
        handler = logging.FileHandler(settings.get("LOG_FILE"), encoding=settings.get("LOG_ENCODING"),
                                      mode="a" if settings.getbool("LOG_FILE_APPEND") else "w")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if value(settings, "ADCRAWLER_LOG_JSON")
                         else logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT")))
    handler.setLevel(settings.get("LOG_LEVEL"))
    handler.addFilter(RedactingFilter())
    if logging.getLevelName(settings.get("LOG_LEVEL")) > logging.DEBUG:
        handler.addFilter(ConsoleFilter())
        settings.set("STATS_DUMP", False, priority="cmdline")  # they are in the stats file
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(logging.NOTSET)
    _handler = handler
    # Scrapy must not add a handler of its own (it would print its start-up lines as text).
    settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")


def keep_copy(path: Path) -> None:
    """Write this process's log to ``path`` too (appended: a resumed run adds to its file), as the
    console has it: a run's log lasts as long as its stats, not as long as scrapyd keeps job logs."""
    if _handler is None or isinstance(_handler, logging.NullHandler):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    copy = logging.FileHandler(path, encoding="utf-8")
    copy.setFormatter(_handler.formatter)
    copy.setLevel(_handler.level)
    for f in _handler.filters:
        copy.addFilter(f)
    logging.getLogger().addHandler(copy)


def shown(names: list[str], most: int = 20, width: int | None = None) -> str:
    """The first ``most`` names for a log line, each cut to ``width`` (a field name may be any length)."""
    return ", ".join(name[:width] for name in names[:most]) + (" ..." if len(names) > most else "")


def error_line(message: str, settings: BaseSettings | None = None) -> str:
    """``message`` as the one line a start-up error prints: JSON when the logs are."""
    try:
        as_json = settings is not None and value(settings, "ADCRAWLER_LOG_JSON")
    except ValueError:
        as_json = False
    message = SECRETS.redact(message)
    return _json(time.time(), "ERROR", "adcrawler", message) if as_json else f"adcrawler: {message}"


def log_failure(task: Any) -> None:
    """Done-callback for a background task: its failure logged once, with its reason, instead of
    asyncio's "Task exception was never retrieved"."""
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        logging.getLogger("adcrawler").error("A background task failed: %s: %s", type(exc).__name__, exc,
                                             exc_info=exc)
