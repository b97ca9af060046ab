"""Log output: one root handler, secrets redacted, text or JSON from the first line.

The project's commands call :func:`configure` before Scrapy logs anything, and
tell Scrapy not to install a root handler of its own, so its start-up lines go
through ours too. The handler honours Scrapy's ``LOG_ENABLED``, ``LOG_FILE``,
``LOG_FILE_APPEND``, ``LOG_ENCODING``, ``LOG_FORMAT``, ``LOG_DATEFORMAT`` and
``LOG_LEVEL`` (scrapyd passes ``LOG_FILE``). With ``ADCRAWLER_LOG_JSON`` each
line is ``{"time", "level", "logger", "message", "run_id", "client"?,
"exception"?}``. Redaction runs before formatting, so both formats are covered.

Above DEBUG, the console is for a person: Scrapy's inventory of versions,
components and overridden settings is left out (:class:`ConsoleFilter`), and
the stats are dumped to the stats file only, unless ``ADCRAWLER_LOG_STATS``.

Settings: ADCRAWLER_LOG_JSON, ADCRAWLER_LOG_STATS (and the Scrapy settings above).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from scrapy.settings import BaseSettings

from adcrawler import redaction
from adcrawler.config import value

_context: dict[str, str | None] = {"run_id": None}
_handler: logging.Handler | None = None


def set_run_id(run_id: str) -> None:
    """Every JSON line from now on carries this run id."""
    _context["run_id"] = run_id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": _context["run_id"],
        }
        client = getattr(record, "client", None)
        if client:
            data["client"] = client
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


class ConsoleFilter(logging.Filter):
    """Leaves out Scrapy's start-up inventory (versions, enabled components,
    overridden settings): a page of lists before the first line that matters.
    At DEBUG it is all there."""

    INVENTORY = ("Versions:", "Enabled addons:", "Enabled extensions:", "Enabled downloader middlewares:",
                 "Enabled spider middlewares:", "Enabled item pipelines:", "Overridden settings:")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("scrapy.") or record.levelno != logging.INFO:
            return True
        try:
            return not record.getMessage().startswith(self.INVENTORY)
        except Exception:  # noqa: BLE001 - a malformed record is still logged
            return True


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
    as_json = value(settings, "ADCRAWLER_LOG_JSON")
    handler.setFormatter(JsonFormatter() if as_json
                         else logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT")))
    handler.setLevel(settings.get("LOG_LEVEL"))
    if logging.getLevelName(settings.get("LOG_LEVEL")) > logging.DEBUG:
        handler.addFilter(ConsoleFilter())
        if not value(settings, "ADCRAWLER_LOG_STATS"):
            settings.set("STATS_DUMP", False, priority="cmdline")  # they are in the stats file
    handler.addFilter(redaction.RedactingFilter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(logging.NOTSET)
    _handler = handler
    # Scrapy must not add a handler of its own (it would print its start-up lines as text).
    settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")


def error_line(message: str, settings: BaseSettings | None = None) -> str:
    """``message`` as the one line a start-up error prints: JSON when the logs are."""
    try:
        as_json = settings is not None and value(settings, "ADCRAWLER_LOG_JSON")
    except ValueError:
        as_json = False
    message = redaction.SECRETS.redact(message)
    if as_json:
        return json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                           "level": "ERROR", "logger": "adcrawler", "message": message, "run_id": None})
    return f"adcrawler: {message}"


def log_failure(task: Any) -> None:
    """Done-callback for a background task: its failure is logged once, with its
    reason, instead of asyncio's "Task exception was never retrieved"."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logging.getLogger("adcrawler").error("A background task failed: %s: %s", type(exc).__name__, exc,
                                             exc_info=exc)
