"""Every adcrawler setting: one name, one form, one line of documentation.

A setting has the same name in the environment, in ``.env`` and with
``scrapy crawl -s NAME=value``. ``adcrawler/settings.py`` reads each one from
the environment (python-decouple) as text; :func:`resolve` parses them all at
start-up, stops the run with one line naming a bad value (exit status 2),
warns about ``ADCRAWLER_*`` names it does not know, and copies the few that
drive Scrapy's own settings (``CONCURRENT_REQUESTS``, ``LOG_LEVEL``...) onto
them, so a value given with ``-s`` reaches Scrapy too. Components read typed
values with :func:`value` in ``from_crawler``.

The README's settings table is checked against :data:`SETTINGS` by the tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

PREFIX = "ADCRAWLER_"
EXIT_CONFIG = 2  # a bad setting, client registry or command line


class ConfigError(ValueError):
    """A setting or the client registry is wrong; the message is the one line to print."""


@dataclass(frozen=True)
class Kind:
    """How a value is written: ``form`` is what the error message asks for."""

    form: str
    parse: Callable[[str], Any]
    bad: str  # an example of a value this kind refuses (the tests use it)


def _number(cast: type, minimum: float, allow_min: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        number = cast(text)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError
        if number < minimum or (number == minimum and not allow_min):
            raise ValueError
        return number
    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


# A host name or an address: what a URL's host may be (no spaces, no stray characters).
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?|\[?[0-9A-Fa-f:.]+\]?)$")


def _url_parts(text: str) -> Any:
    """``urlsplit`` with every part checked: a usable host, a port in range, no spaces."""
    parts = urlsplit(text)
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise ValueError
    parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    if parts.hostname is not None and not _HOST.match(parts.hostname):
        raise ValueError
    return parts


def _http_url(text: str) -> str:
    parts = _url_parts(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError
    return text.strip().rstrip("/")


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: parse(text) if text.strip() else ""


def _database_url(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    if text.startswith("sqlite:///"):
        if not text[len("sqlite:///"):].strip():
            raise ValueError
        return text
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError
    parts = _url_parts(text)  # the host may also come from the query (a socket directory)
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ValueError
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError
    return text.strip()


def _existing_file(text: str) -> str:
    if text.strip() and not os.path.isfile(text.strip()):
        raise ValueError
    return text.strip()


def _log_level(text: str) -> str:
    if text.strip().upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError
    return text.strip().upper()


def _status_list(text: str) -> tuple[int, ...]:
    codes = tuple(int(code) for code in text.split(",") if code.strip())
    if not codes or any(not 400 <= code <= 599 or code in (401, 403, 429) for code in codes):
        raise ValueError
    return codes


def _job_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text.strip()):
        raise ValueError
    return text.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip().lower() not in choices:
            raise ValueError
        return text.strip().lower()
    return parse


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError
    return port


def _url_list(text: str) -> tuple[str, ...]:
    urls = tuple(_http_url(part) for part in text.split(",") if part.strip())
    if not urls:
        raise ValueError
    return urls


COUNT = Kind("a whole number > 0", _number(int, 1, True), "ten")
COUNT_OR_ZERO = Kind("a whole number >= 0", _number(int, 0, True), "-1")
PORT = Kind("a port number from 0 to 65535 (0 = off)", _port, "70000")
SECONDS = Kind("a number of seconds > 0", _number(float, 0, False), "soon")
SECONDS_OR_ZERO = Kind("a number of seconds >= 0 (0 = off)", _number(float, 0, True), "-5")
DAYS = Kind("a number of days >= 0 (0 = keep all)", _number(float, 0, True), "-1")
BOOL = Kind("true or false", _bool, "maybe")
HTTP_URL = Kind("an http:// or https:// URL", _http_url, "ftp://example.com")
OPTIONAL_URL = Kind("an http:// or https:// URL, or empty for off", _optional(_http_url), "localhost:9091")
DATABASE = Kind("postgresql://[user[:password]@]host[:port]/dbname, sqlite:///path, or empty for the SQLite file",
                _database_url, "mysql://db")
PATH = Kind("a path", _non_empty, " ")
OPTIONAL_PATH = Kind("a path, or empty for off", lambda t: t.strip(), "")
REGISTRY = Kind("the path of an existing TOML file, or empty for the packaged registry", _existing_file,
                "/nonexistent/clients.toml")
HOST = Kind("a host name or address", _non_empty, " ")
LOG_LEVEL = Kind("DEBUG, INFO, WARNING, ERROR or CRITICAL", _log_level, "LOUD")
STATUSES = Kind("comma-separated HTTP statuses from 400 to 599 (not 401, 403, 429)", _status_list, "503,abc")
JOB = Kind("letters, digits, '.', '_' or '-'", _job_name, "a job")
URLS = Kind("comma-separated http:// URLs", _url_list, "node1:6800")
QUARANTINE_ALERT = Kind("new or every", _choice("new", "every"), "sometimes")

# Kind.bad of OPTIONAL_PATH is empty: every text is a valid optional path.
# The settings that use it have no invalid value, and the tests know it.


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    kind: Kind
    doc: str
    scrapy: str | None = None  # the Scrapy setting this one drives
    command: str = "crawl"  # who reads it: "crawl" or "dispatch"
    secret: bool = False  # may hold a password: its value is never shown


SETTINGS: list[Setting] = [
    # -- The platform
    Setting("AD_PLATFORM_API_URL", "http://127.0.0.1:3001", HTTP_URL, "base URL of the platform"),
    Setting("ADCRAWLER_CLIENTS_FILE", "", REGISTRY, "client registry file (empty: the packaged one)"),
    Setting("ADCRAWLER_DRY_RUN", "false", BOOL,
            "list and validate every page, report what would be stored and synced; write nothing, send no sync "
            "(also `-a dry_run=1`)"),
    Setting("ADCRAWLER_PAGE_SIZE", "100", COUNT, "`limit` asked for on list calls; the platform may cap it"),
    Setting("ADCRAWLER_MAX_CAMPAIGNS", "10000", COUNT,
            "most campaigns listed per client and run: a listing that reaches it stops, and the client is partial"),
    Setting("ADCRAWLER_QUARANTINE_ALERT", "new", QUARANTINE_ALERT,
            "`new`: a record quarantined again for the reason an earlier run gave is counted, but does not "
            "make the run partial; `every`: every quarantine does"),
    # -- Rate budget, per client
    Setting("ADCRAWLER_RATE_LIMIT", "10", COUNT, "the platform's budget per client: requests per window"),
    Setting("ADCRAWLER_RATE_WINDOW", "60", SECONDS, "the budget's rolling window (s)"),
    Setting("ADCRAWLER_RATE_LIMIT_CEILING", "100", COUNT,
            "most requests per `ADCRAWLER_RATE_WINDOW` a platform's rate-limit headers may raise a budget to "
            "(a lower limit they state is adopted at once)"),
    Setting("ADCRAWLER_RATE_429_RETRIES", "5", COUNT_OR_ZERO, "times one request may meet a 429 before it is given up"),
    Setting("ADCRAWLER_RETRY_AFTER_MAX", "300", SECONDS, "longest Retry-After honoured (s); larger values are clamped"),
    # -- Retries
    Setting("ADCRAWLER_RETRY_TIMES", "6", COUNT_OR_ZERO,
            "retries of a 5xx, timeout, dropped connection or non-JSON answer (the token request too)"),
    Setting("ADCRAWLER_REAUTH_RETRIES", "2", COUNT_OR_ZERO,
            "times one API call is sent again with a new token after the platform refused its token (401)"),
    Setting("ADCRAWLER_RETRY_HTTP_CODES", "500,502,503,504,408,522,524", STATUSES, "statuses retried"),
    Setting("ADCRAWLER_RETRY_BACKOFF_BASE", "1", SECONDS,
            "backoff before retry n: uniform in [c/2, c], c = min(MAX, BASE·2ⁿ⁻¹) s, unless Retry-After says"),
    Setting("ADCRAWLER_RETRY_BACKOFF_MAX", "30", SECONDS, "cap of that backoff (s)"),
    Setting("ADCRAWLER_SYNC_PASSES", "3", COUNT,
            "passes over a client's failed syncs: a campaign whose sync failed after all retries is tried "
            "again at the end of its client's run, up to this many passes in all"),
    # -- Timeouts
    Setting("ADCRAWLER_TIMEOUT_AUTH", "10", SECONDS, "timeout of a token request (s)"),
    Setting("ADCRAWLER_TIMEOUT_LIST", "15", SECONDS, "timeout of a list call (s)"),
    Setting("ADCRAWLER_TIMEOUT_SYNC", "10", SECONDS, "timeout of a sync call (s); a sync takes about 2 s"),
    Setting("ADCRAWLER_TOKEN_REFRESH_MARGIN", "60", SECONDS_OR_ZERO,
            "refresh a token this long before it expires (at most a tenth of its life)"),
    # -- Storage
    Setting("DATABASE_URL", "", DATABASE, "empty or `sqlite:///path` = SQLite; `postgresql://...` = PostgreSQL",
            secret=True),
    Setting("ADCRAWLER_SQLITE_PATH", "data/adcrawler.sqlite3", PATH, "SQLite file when `DATABASE_URL` is empty"),
    Setting("ADCRAWLER_DB_BATCH_SIZE", "50", COUNT, "rows per batch (one transaction)"),
    Setting("ADCRAWLER_DB_FLUSH_INTERVAL", "5", SECONDS,
            "a partial batch is written once its oldest row waited this long (s)"),
    Setting("ADCRAWLER_DB_RETRIES", "5", COUNT_OR_ZERO, "retries of a batch while the database is unreachable"),
    Setting("ADCRAWLER_DB_RETRY_BACKOFF_BASE", "1", SECONDS, "backoff between batch retries: base (s)"),
    Setting("ADCRAWLER_DB_RETRY_BACKOFF_MAX", "30", SECONDS, "backoff between batch retries: cap (s)"),
    Setting("ADCRAWLER_DB_STATEMENT_TIMEOUT", "30", SECONDS,
            "longest a database statement may take (s), waits included; then it is a fault: retried, then spooled"),
    Setting("ADCRAWLER_DB_LOCK_TIMEOUT", "5", SECONDS,
            "longest a statement waits for another session's lock (s; SQLite: its busy timeout)"),
    Setting("ADCRAWLER_LOCK_CHECK_INTERVAL", "5", SECONDS,
            "how often the run checks it still holds its clients' locks (s); a lost one interrupts its client"),
    Setting("ADCRAWLER_SPOOL_DIR", "data/spool", PATH, "where batches go when the database stays down"),
    # -- Operating
    Setting("ADCRAWLER_STATS_DIR", "data/stats", OPTIONAL_PATH,
            "one JSON stats file per run, named `<start time>-<run id>.json` (empty = off)"),
    Setting("ADCRAWLER_STATS_KEEP_DAYS", "30", DAYS,
            "stats files older than this many days are removed after a run (0 = keep all)"),
    Setting("ADCRAWLER_METRICS_HOST", "127.0.0.1", HOST, "address of the Prometheus pull endpoint"),
    Setting("ADCRAWLER_METRICS_PORT", "0", PORT, "port of the Prometheus pull endpoint (0 = off)"),
    Setting("ADCRAWLER_PUSHGATEWAY_URL", "", OPTIONAL_URL,
            "Pushgateway to push each client's metrics to at the end (empty = off)"),
    Setting("ADCRAWLER_PUSHGATEWAY_JOB", "adcrawler", JOB, "`job` label of the pushed groups"),
    Setting("ADCRAWLER_PUSH_INTERVAL", "30", SECONDS_OR_ZERO,
            "push the running clients' progress every N s (0 = only at the end)"),
    Setting("ADCRAWLER_PUSH_TIMEOUT", "2", SECONDS, "timeout of one push (s)"),
    Setting("ADCRAWLER_PUSH_DEADLINE", "5", SECONDS,
            "longest the pushes at the end may delay the end of the run (s); pushes still undone fail"),
    Setting("ADCRAWLER_PUSH_CONCURRENCY", "8", COUNT, "pushes at once"),
    Setting("ADCRAWLER_SYNC_MAX_AGE", "43200", SECONDS,
            "a client not synced successfully for this long is stale (pushed as a metric: the alert reads it)"),
    Setting("ADCRAWLER_PROGRESS_INTERVAL", "30", SECONDS_OR_ZERO,
            "one progress line for the whole run every N s (per client at DEBUG; 0 = off)"),
    Setting("ADCRAWLER_LOG_JSON", "false", BOOL, "one JSON object per log line, from the first line to the last"),
    Setting("ADCRAWLER_LOG_LEVEL", "INFO", LOG_LEVEL, "log level", scrapy="LOG_LEVEL"),
    Setting("ADCRAWLER_LOG_STATS", "false", BOOL,
            "also dump the run's stats on the console at the end (they are always in the stats file; "
            "at DEBUG they are on the console too)"),
    # -- Concurrency
    Setting("ADCRAWLER_CONCURRENT_REQUESTS", "1024", COUNT,
            "requests on the wire at once, all clients together (requests waiting for budget do not count)",
            scrapy="CONCURRENT_REQUESTS"),
    Setting("ADCRAWLER_CONCURRENT_PER_CLIENT", "16", COUNT, "requests on the wire at once for one client",
            scrapy="CONCURRENT_REQUESTS_PER_DOMAIN"),
    # -- Dispatch over scrapyd nodes (python -m adcrawler.dispatch)
    Setting("ADCRAWLER_SCRAPYD_NODES", "http://127.0.0.1:6800", URLS, "scrapyd nodes to spread clients over",
            command="dispatch"),
    Setting("ADCRAWLER_SCRAPYD_PROJECT", "adcrawler", JOB, "scrapyd project name", command="dispatch"),
    Setting("ADCRAWLER_SHARD_SIZE", "250", COUNT, "most clients in one scrapyd job: a node runs its share of "
            "the clients in as few jobs as this allows", command="dispatch"),
]
BY_NAME = {s.name: s for s in SETTINGS}


def environment_values() -> dict[str, str]:
    """Each setting as text from the environment or ``.env``, else its default."""
    from decouple import config

    return {s.name: config(s.name, default=s.default) for s in SETTINGS}


def _text(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        return ",".join(str(part) for part in raw)
    return "" if raw is None else str(raw)


def parse(name: str, raw: Any) -> Any:
    """The typed value of setting ``name``; ConfigError names the setting and the form."""
    setting = BY_NAME[name]
    try:
        return setting.kind.parse(_text(raw))
    except (TypeError, ValueError):
        shown = " (value not shown: it may hold a password)" if setting.secret else f"={_text(raw)!r}"
        raise ConfigError(f"{name}{shown}: expected {setting.kind.form}") from None


def value(settings: BaseSettings | Mapping[str, Any], name: str) -> Any:
    """The typed value of ``name`` in ``settings`` (its default when absent)."""
    raw = settings.get(name)
    return parse(name, BY_NAME[name].default if raw is None else raw)


def unknown_names(names: Iterable[str]) -> list[str]:
    return sorted({n for n in names if n.startswith(PREFIX) and n not in BY_NAME})


def _dotenv_names() -> list[str]:
    from decouple import config

    repository = getattr(getattr(config, "config", None), "repository", None)
    return list(getattr(repository, "data", {}) or {})


def resolve(settings: BaseSettings, command: str = "crawl") -> list[str]:
    """Check every setting ``command`` reads, drive Scrapy's settings from ours,
    and return warnings for unknown ``ADCRAWLER_*`` names. Raises ConfigError."""
    values = {s.name: value(settings, s.name) for s in SETTINGS if s.command == command}
    for s in SETTINGS:
        if s.scrapy and s.name in values:
            settings.set(s.scrapy, values[s.name], priority=settings.getpriority(s.name) or "project")
    names = [*os.environ, *_dotenv_names(), *(name for name, _ in settings.items())]
    return [f"unknown setting {name} is ignored (see the settings table in the README)"
            for name in unknown_names(names)]
