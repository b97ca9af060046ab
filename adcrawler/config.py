"""The settings an operator sets: one name each, the same in the environment, ``.env`` and ``-s``,
checked before a command starts (a bad value is one line naming it, exit 2); a retired name or a near
miss of a known one is warned about. Everything else is a constant beside its code, its durations
scaled by ``ADCRAWLER_TIME_SCALE``."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from decouple import config
from scrapy.settings import BaseSettings

PREFIX = "ADCRAWLER_"
EXIT_CONFIG = 2  # a bad setting, client registry or command line
DRY_RUN = "adcrawler_dry_run"  # the Scrapy setting the crawl command makes of -a dry_run=1
CONFIRM_REMOVALS = "adcrawler_confirm_removals"  # ... and of -a confirm_removals=1
RESUME_RUNS = "adcrawler_resume_runs"  # ... and of -a resume=RUN,... (scrapy dispatch sets it)


class ConfigError(ValueError):
    """A setting or the client registry is wrong; the message is the one line to print."""


@dataclass(frozen=True)
class Kind:
    form: str  # what the error message asks for
    parse: Callable[[str], Any]
    bad: str  # a value this kind refuses (the tests use it)


def _number(cast: type, minimum: float, allow_min: bool, maximum: float = float("inf")) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        number = cast(text)
        if number != number or not (minimum < number or allow_min and number == minimum) or number > maximum:
            raise ValueError
        return number
    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError
    return lowered in ("1", "true", "yes", "on")


# A host name or an address: what a URL's host may be.
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?|\[?[0-9A-Fa-f:.]+\]?)$")


def _url_parts(text: str) -> Any:
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


def _database_url(text: str) -> str:
    text = text.strip()
    if text.startswith("sqlite:///"):
        ok = bool(text[len("sqlite:///"):].strip())
    elif text.startswith(("postgresql://", "postgres://")):
        parts = _url_parts(text)  # the host may also come from the query (a socket directory)
        ok = bool(parts.path.strip("/")) or "dbname=" in parts.query
    else:
        ok = not text
    if not ok:
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


def _choice(text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ValueError
    return text


def _url_list(text: str) -> tuple[str, ...]:
    urls = tuple(_http_url(part) for part in text.split(",") if part.strip())
    if not urls:
        raise ValueError
    return urls


COUNT = Kind("a whole number > 0", _number(int, 1, True), "ten")
PORT = Kind("a port number from 0 to 65535 (0 = off)", _number(int, 0, True, 65535), "70000")
SECONDS = Kind("a number of seconds > 0", _number(float, 0, False), "soon")
SCALE = Kind("a number > 0 and at most 1", _number(float, 0, False, 1.0), "2")
BOOL = Kind("true or false", _bool, "maybe")
HTTP_URL = Kind("an http:// or https:// URL", _http_url, "ftp://example.com")
OPTIONAL_URL = Kind("an http:// or https:// URL, or empty for off",
                    lambda t: _http_url(t) if t.strip() else "", "localhost:9091")
DATABASE = Kind("postgresql://[user[:password]@]host[:port]/dbname, sqlite:///path, or empty for the SQLite file",
                _database_url, "mysql://db")
PATH = Kind("a path", _non_empty, " ")
REGISTRY = Kind("the path of an existing TOML file, or empty for the packaged registry", _existing_file,
                "/nonexistent/clients.toml")
URLS = Kind("comma-separated http:// URLs", _url_list, "node1:6800")
DAYS = Kind("a number of days >= 0 (0 = keep everything)", _number(float, 0, True), "-1")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    kind: Kind
    doc: str
    secret: bool = False  # may hold a password: its value is never shown


SETTINGS: list[Setting] = [
    Setting("AD_PLATFORM_API_URL", "http://127.0.0.1:3001", HTTP_URL, "base URL of the platform"),
    Setting("DATABASE_URL", "", DATABASE, "`postgresql://...` = PostgreSQL; `sqlite:///path` or empty = SQLite "
            "(empty: `adcrawler.sqlite3` in `ADCRAWLER_DATA_DIR`)", secret=True),
    Setting("ADCRAWLER_DATA_DIR", "data", PATH, "the SQLite file (when `DATABASE_URL` is empty), `spool/` (batches "
            "the database could not take) and `stats/` (one JSON file per run)"),
    Setting("ADCRAWLER_CLIENTS_FILE", "", REGISTRY, "client registry file (empty: the packaged one)"),
    Setting("ADCRAWLER_RATE_LIMIT", "10", COUNT, "the platform's budget per client: requests per window"),
    Setting("ADCRAWLER_RATE_WINDOW", "60", SECONDS, "the budget's rolling window (s)"),
    Setting("ADCRAWLER_PAGE_SIZE", "100", COUNT, "`limit` asked for on list calls; the platform may cap it"),
    Setting("ADCRAWLER_MAX_CAMPAIGNS", "10000", COUNT,
            "most campaigns listed per client and run: a listing that reaches it stops, and the client is partial"),
    Setting("ADCRAWLER_TIMEOUT_AUTH", "10", SECONDS, "timeout of a token request (s)"),
    Setting("ADCRAWLER_TIMEOUT_LIST", "15", SECONDS, "timeout of a list call (s)"),
    Setting("ADCRAWLER_TIMEOUT_SYNC", "10", SECONDS, "timeout of a sync call (s); a sync takes about 2 s"),
    Setting("ADCRAWLER_OUTAGE_LIMIT", "600", SECONDS,
            "how long a platform that answers nothing (its token endpoint included) is waited out, one probe per "
            "backoff, before the client is given up (s)"),
    Setting("ADCRAWLER_REMOVAL_GUARD", "0.5", SCALE,
            "a complete listing that would mark more than this share of a client's campaigns removed marks none "
            "(the client is partial) until a run with -a confirm_removals=1 (1 = no guard)"),
    Setting("ADCRAWLER_KEEP_DAYS", "0", DAYS,
            "history rows, run records and stats files older than this are removed after a run, in short batches"),
    Setting("ADCRAWLER_PUSHGATEWAY_URL", "", OPTIONAL_URL,
            "Pushgateway to push each client's metrics to, during the run and at its end (empty = off)"),
    Setting("ADCRAWLER_METRICS_PORT", "0", PORT, "port of a Prometheus pull endpoint on 127.0.0.1 (0 = off)"),
    Setting("ADCRAWLER_SYNC_MAX_AGE", "43200", SECONDS,
            "a client not synced successfully for this long is stale (pushed as a metric: the alert reads it)"),
    Setting("ADCRAWLER_LOG_JSON", "false", BOOL, "one JSON object per log line, from the first line to the last"),
    Setting("ADCRAWLER_SCRAPYD_NODES", "http://127.0.0.1:6800", URLS, "scrapyd nodes `scrapy dispatch` spreads "
            "clients over"),
    Setting("ADCRAWLER_TIME_SCALE", "1", SCALE, "for a platform whose clock runs faster than the real one (the "
            "simulator's `--time-scale`): multiplies the rate window, the timeouts and every wait and interval"),
]
BY_NAME = {s.name: s for s in SETTINGS}
# Scrapy's own settings the project reads from the environment too: checked as ours are.
LEVEL = Kind("DEBUG, INFO, WARNING, ERROR or CRITICAL",
             lambda t: _choice(t.strip().upper(), ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")), "LOUD")
SCRAPY = {"CONCURRENT_REQUESTS": COUNT, "LOG_LEVEL": LEVEL}

# Names an earlier version read, and what replaced each: still set, they get one warning.
RETIRED = {
    **dict.fromkeys(("ADCRAWLER_SQLITE_PATH", "ADCRAWLER_SPOOL_DIR", "ADCRAWLER_STATS_DIR"),
                    "the SQLite file, the spool and the stats live in ADCRAWLER_DATA_DIR (or DATABASE_URL="
                    "sqlite:///path)"),
    "ADCRAWLER_STATS_KEEP_DAYS": "use ADCRAWLER_KEEP_DAYS",
    "ADCRAWLER_DRY_RUN": "use -a dry_run=1",
    "ADCRAWLER_LOG_LEVEL": "use Scrapy's LOG_LEVEL",
    "ADCRAWLER_CONCURRENT_REQUESTS": "use Scrapy's CONCURRENT_REQUESTS",
    "ADCRAWLER_SHARD_SIZE": "use scrapy dispatch --shard-size",
    **dict.fromkeys((
        "ADCRAWLER_QUARANTINE_ALERT", "ADCRAWLER_RATE_LIMIT_CEILING", "ADCRAWLER_RATE_429_RETRIES",
        "ADCRAWLER_RETRY_AFTER_MAX", "ADCRAWLER_RETRY_TIMES", "ADCRAWLER_REAUTH_RETRIES", "ADCRAWLER_RETRY_HTTP_CODES",
        "ADCRAWLER_RETRY_BACKOFF_BASE", "ADCRAWLER_RETRY_BACKOFF_MAX", "ADCRAWLER_SYNC_PASSES",
        "ADCRAWLER_TOKEN_REFRESH_MARGIN", "ADCRAWLER_DB_BATCH_SIZE", "ADCRAWLER_DB_FLUSH_INTERVAL",
        "ADCRAWLER_DB_RETRIES", "ADCRAWLER_DB_RETRY_BACKOFF_BASE", "ADCRAWLER_DB_RETRY_BACKOFF_MAX",
        "ADCRAWLER_DB_STATEMENT_TIMEOUT", "ADCRAWLER_DB_LOCK_TIMEOUT", "ADCRAWLER_LOCK_CHECK_INTERVAL",
        "ADCRAWLER_METRICS_HOST", "ADCRAWLER_PUSHGATEWAY_JOB", "ADCRAWLER_PUSH_INTERVAL", "ADCRAWLER_PUSH_TIMEOUT",
        "ADCRAWLER_PUSH_DEADLINE", "ADCRAWLER_PUSH_CONCURRENCY", "ADCRAWLER_PROGRESS_INTERVAL", "ADCRAWLER_LOG_STATS",
        "ADCRAWLER_CONCURRENT_PER_CLIENT", "ADCRAWLER_SCRAPYD_PROJECT"),
        "now a fixed value (its durations follow ADCRAWLER_TIME_SCALE)"),
}
# Names read from the environment that are not settings: a near miss of these is not a typo.
OTHER_NAMES = ("AD_PLATFORM_EMAIL", "AD_PLATFORM_PASSWORD", "SCRAPYD_USERNAME", "SCRAPYD_PASSWORD")


def environment_values() -> dict[str, str]:
    """Each setting as text from the environment or ``.env``, else its default."""
    return {s.name: config(s.name, default=s.default) for s in SETTINGS}


def _text(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        return ",".join(str(part) for part in raw)
    return "" if raw is None else str(raw)


def parse(name: str, raw: Any) -> Any:
    """The typed value of setting ``name``; ConfigError names the setting and the form."""
    kind, secret = (BY_NAME[name].kind, BY_NAME[name].secret) if name in BY_NAME else (SCRAPY[name], False)
    try:
        return kind.parse(_text(raw))
    except (TypeError, ValueError):
        shown = " (value not shown: it may hold a password)" if secret else f"={_text(raw)!r}"
        raise ConfigError(f"{name}{shown}: expected {kind.form}") from None


def value(settings: BaseSettings | Mapping[str, Any], name: str) -> Any:
    """The typed value of ``name`` in ``settings`` (its default when absent)."""
    raw = settings.get(name)
    return parse(name, BY_NAME[name].default if raw is None else raw)


# Loopback and the event loop add milliseconds that do not shrink with the platform's clock:
# a timeout below this would fire on healthy requests.
MIN_TIMEOUT = 0.25


def scaled(settings: BaseSettings | Mapping[str, Any], seconds: float, floor: float = 0.0) -> float:
    """A duration of the real platform's clock, on the clock of the platform in use."""
    return max(seconds * value(settings, "ADCRAWLER_TIME_SCALE"), floor)


def timeout(settings: BaseSettings | Mapping[str, Any], endpoint: str) -> float:
    """The timeout of an ``auth``, ``list`` or ``sync`` call, on the platform's clock."""
    return scaled(settings, value(settings, f"ADCRAWLER_TIMEOUT_{endpoint.upper()}"), MIN_TIMEOUT)


def warnings_for(names: Iterable[str]) -> list[str]:
    """One line for each name that is retired, or a near miss of a known one."""
    known = [*BY_NAME, *OTHER_NAMES]
    out = []
    for name in sorted(set(names)):
        if name in RETIRED:
            out.append(f"{name} is retired and ignored: {RETIRED[name]}")
        elif name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                out.append(f"{name} is not a setting and is ignored: did you mean {close[0]}?")
            elif name.startswith(PREFIX):
                out.append(f"{name} is not a setting and is ignored (see the settings reference)")
    return out


def _dotenv_names() -> list[str]:
    repository = getattr(getattr(config, "config", None), "repository", None)
    return list(getattr(repository, "data", {}) or {})


def resolve(settings: BaseSettings, names: Iterable[str] = BY_NAME) -> list[str]:
    """Check the settings ``names`` (every one by default); return the warnings about the names
    set in the environment, ``.env`` and the settings that are none of ours. Raises ConfigError."""
    for name in names:
        value(settings, name)
    for name in SCRAPY:
        settings.set(name, parse(name, settings.get(name)), priority=settings.getpriority(name) or "project")
    return warnings_for([*os.environ, *_dotenv_names(), *(name for name, _ in settings.items())])
