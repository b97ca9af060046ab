"""Keep secrets out of every log line.

Secrets are registered as soon as they are read (passwords, Basic headers,
bearer tokens); a logging filter on every root handler replaces them with a
short marker before the record is formatted. Redact first, log second.
"""

from __future__ import annotations

import logging
import re
import threading

MARK = "[REDACTED]"
_MIN_LEN = 4  # shorter strings would redact ordinary words


class Secrets:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._values.update(v for v in values if v and len(v) >= _MIN_LEN)

    def redact(self, text: str) -> str:
        # Longest first, so a secret containing another is replaced whole.
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MARK)
        return text


SECRETS = Secrets()


# What could end a line, move the cursor, or turn text around on a terminal: C0 and C1 controls,
# line and paragraph separators, bidirectional overrides. Shown escaped (\n, \x1b, \u2028).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """``text`` with every character that could forge a log line or drive a terminal escaped."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _escaped(arg: object) -> object:
    # A log line's arguments carry what the platform sent (ids, field names, reasons); the
    # message template is ours. Numbers and mappings pass as they are.
    return escape(str(arg)) if isinstance(arg, (str, BaseException)) else arg


class RedactingFilter(logging.Filter):
    """Rewrites the record's message, arguments and traceback text: secrets redacted, and
    the arguments' unprintable characters escaped."""

    def __init__(self, secrets: Secrets = SECRETS):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is still logged, unformatted
            message = str(record.msg)
        record.msg, record.args = self.secrets.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.secrets.redact(record.exc_text)
            record.exc_info = None  # formatters would print the unredacted original
        return True


def install(secrets: Secrets = SECRETS) -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(secrets))
