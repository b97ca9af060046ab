"""Knobs of the Ad Platform simulator: defaults, flags and environment variables.

Every knob is a command-line flag and an environment variable ``MOCK_API_<NAME>``
(the flag wins). Durations are given in the platform's real seconds and multiplied
by ``time_scale`` when served, so tests run the real protocol faster.

Faults: every endpoint (``auth``, ``list``, ``sync``) can answer each fault at its
own rate, ``--<endpoint>-<fault>-rate``:

- ``503``: 503 JSON (with ``Retry-After`` when ``--fault-retry-after`` is set);
- ``429``: 429 JSON with ``Retry-After`` and ``retry_after``, whatever the budget;
- ``401``: on ``/auth/token`` good credentials are refused; on ``/api/*`` the
  presented token is revoked and refused;
- ``garbage``: 200 with an HTML body;
- ``reset``: the connection is dropped without an answer;
- ``hang``: no answer for ``--hang-seconds``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

DEMO_ACCOUNTS = "admin@mixoads.com:SuperSecret123!"
ENDPOINTS = ("auth", "list", "sync")
FAULTS = ("503", "429", "401", "garbage", "reset", "hang")
HEADER_STYLES = ("none", "ietf", "ietf-06", "x-delta", "x-epoch", "x-epoch-ms", "shopify")
# The default profile: every endpoint fails sometimes, the token endpoint included.
DEFAULT_FAULTS = {
    "auth_503": 0.1, "auth_429": 0.05, "auth_hang": 0.05,
    "list_503": 0.2, "list_hang": 0.1,
    "sync_503": 0.2, "sync_hang": 0.1,
}


def fault_knob(endpoint: str, fault: str) -> str:
    return f"{endpoint}_{fault}_rate"


@dataclass
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    time_scale: float = 1.0
    rate_limit: int = 10
    rate_window: float = 60.0
    retry_after: float = 60.0
    fault_retry_after: float = 0.0
    faults: dict[str, float] = field(default_factory=dict)  # "<endpoint>_<fault>" -> probability
    hang_seconds: float = 3600.0
    sync_delay: float = 2.0
    token_lifetime: float = 3600.0
    token_early_expiry: float = 0.0
    campaigns: int = 100
    max_page_size: int = 100
    hostile_names: int = 0
    malformed: int = 0
    implausible: int = 0
    out_of_range: int = 0
    unknown_statuses: int = 0
    numeric_strings: float = 0.0
    missing_values: int = 0
    odd_values: int = 0
    parser_limits: int = 0
    forged_keys: int = 0
    unknown_fields: bool = False
    changing_fields: bool = False
    sync_lost_rate: float = 0.0  # a sync executed, then its answer never sent (the caller times out)
    honour_keys: bool = False  # a repeated Idempotency-Key answers the stored result, not executed again
    ignore_page: bool = False
    shifting_list: bool = False
    announced_total: str = ""  # "": the true count; "none": no total; a number: that number
    page_cap: int = 0  # serve at most this many per page, whatever limit asks (0: off)
    endless: bool = False
    gzip: bool = False
    redirect_endpoint: str = ""  # answer this endpoint's calls with a redirect (auth, list or sync; empty: off)
    redirect_status: int = 302
    redirect_to: str = "self"  # base URL the redirect points to; "self": this server (same origin)
    ratelimit_headers: str = "none"  # none, ietf, ietf-06, x-delta, x-epoch, x-epoch-ms
    limit_schedule: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, limit)
    shared_budget: bool = False  # one budget per account across its clients
    partitions: int = 0  # clients spread over this many shared budgets, named by pk (0: off)
    partition_every: int = 0  # a client moves to the next partition after this many requests (0: never)
    reset_early: float = 0.0  # announce resets this many seconds early (a platform that lies a little)
    rate_limited_status: int = 429  # 403 or 400: a secondary limit answered as GitHub does
    sync_fail_first: int = 0  # answer the first N sync calls of every tenth campaign with a 503
    hold_syncs: int = -1  # answer this many sync calls per client, then hold the rest until released (-1: off)
    hold_client: str = ""  # hold only this client's syncs (empty: every client's)
    seed: int | None = None
    quirks: bool = False
    crawler_env: str = ""  # write the matching crawler settings to this file
    accounts: dict[str, str] = field(default_factory=dict)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def fault(self, endpoint: str, fault: str) -> float:
        return self.faults.get(f"{endpoint}_{fault}", 0.0)


def _env(name: str, default: object) -> object:
    return os.environ.get(f"MOCK_API_{name.upper()}", default)


def _flag(name: str) -> bool:
    return str(_env(name, "")).lower() in ("1", "true", "yes")


def _accounts(text: str) -> dict[str, str]:
    """Parse ``email:password[,email:password...]``."""
    accounts = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        email, sep, password = pair.partition(":")
        if not sep or not email or not password:
            raise argparse.ArgumentTypeError(
                "accounts must look like email:password[,email:password]"
            )
        accounts[email] = password
    return accounts


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def _schedule(text: str) -> list[tuple[float, int]]:
    steps = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        at, sep, limit = part.partition(":")
        try:
            steps.append((float(at), int(limit)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: SECONDS:LIMIT") from None
        if not sep or steps[-1][0] < 0 or steps[-1][1] < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: SECONDS >= 0 and LIMIT >= 1")
    return steps


def _total(text: str) -> str:
    text = text.strip().lower()
    if text not in ("", "none") and not text.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: empty, 'none' or a number")
    return text


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mock_api",
        description=(
            "Ad Platform API simulator. Every flag can also be set as the "
            "environment variable MOCK_API_<FLAG> (e.g. MOCK_API_TIME_SCALE)."
        ),
    )
    d = MockConfig()
    a = p.add_argument
    a("--host", default=_env("host", d.host), help="bind address (default %(default)s)")
    a("--port", type=int, default=_env("port", d.port),
      help="port; 0 picks a free one (default %(default)s). The URL is the first stdout line")
    a("--time-scale", type=_positive, default=_env("time_scale", d.time_scale),
      help="multiplies the rate window, sync delay, token lifetime and Retry-After (default %(default)s)")
    a("--rate-limit", type=int, default=_env("rate_limit", d.rate_limit),
      help="requests per window per X-Client-ID (default %(default)s)")
    a("--rate-window", type=_positive, default=_env("rate_window", d.rate_window),
      help="rolling window in seconds (default %(default)s)")
    a("--retry-after", type=float, default=_env("retry_after", d.retry_after),
      help="seconds a 429 asks the client to wait (default %(default)s)")
    a("--fault-retry-after", type=float, default=_env("fault_retry_after", d.fault_retry_after),
      help="Retry-After seconds sent with injected 503s (0 = none; default %(default)s)")
    a("--quiet", action="store_true", default=_flag("quiet"),
      help="no injected faults unless a fault rate is given explicitly")
    for endpoint in ENDPOINTS:
        for fault in FAULTS:
            knob = fault_knob(endpoint, fault)
            a(f"--{knob.replace('_', '-')}", type=_probability, default=_env(knob, None),
              help=f"probability that a {endpoint} call answers {fault} "
                   f"(default {DEFAULT_FAULTS.get(f'{endpoint}_{fault}', 0.0)})")
    a("--hang-seconds", type=_positive, default=_env("hang_seconds", d.hang_seconds),
      help="how long a hanging request is held, unscaled (default %(default)s)")
    a("--sync-delay", type=float, default=_env("sync_delay", d.sync_delay),
      help="seconds a sync call takes (default %(default)s)")
    a("--token-lifetime", type=_positive, default=_env("token_lifetime", d.token_lifetime),
      help="token lifetime in seconds (default %(default)s)")
    a("--token-early-expiry", type=float, default=_env("token_early_expiry", d.token_early_expiry),
      help="tokens really expire this many seconds before the expires_in they announce (default %(default)s)")
    a("--campaigns", type=_count, default=_env("campaigns", d.campaigns),
      help="campaigns per client (default %(default)s)")
    a("--max-page-size", type=int, default=_env("max_page_size", d.max_page_size),
      help="largest accepted limit (default %(default)s)")
    a("--hostile-names", type=_count, default=_env("hostile_names", d.hostile_names),
      help="give this many campaigns names with quotes, SQL, emoji, long strings (default %(default)s)")
    a("--malformed", type=_count, default=_env("malformed", d.malformed),
      help="serve this many records per client that cannot be stored: bad or missing id, not an "
           "object, wrong types, NUL in a name (default %(default)s)")
    a("--out-of-range", type=_count, default=_env("out_of_range", d.out_of_range),
      help="serve this many campaigns per client with values no column can hold (default %(default)s)")
    a("--implausible", type=_count, default=_env("implausible", d.implausible),
      help="serve this many campaigns per client with implausible but storable values: clicks above "
           "impressions, negative counts (default %(default)s)")
    a("--unknown-statuses", type=_count, default=_env("unknown_statuses", d.unknown_statuses),
      help="serve this many campaigns per client with statuses outside the documented set (default %(default)s)")
    a("--numeric-strings", type=_probability, default=_env("numeric_strings", d.numeric_strings),
      help="fraction of campaigns whose numbers are sent as numeric strings (default %(default)s)")
    a("--missing-values", type=_count, default=_env("missing_values", d.missing_values),
      help="serve this many campaigns per client with values absent or null (not computed yet): "
           "impressions, clicks, conversions, budget, name, status, created_at (default %(default)s)")
    a("--odd-values", type=_count, default=_env("odd_values", d.odd_values),
      help="serve this many campaigns per client with numbers and dates at the edges of the columns: "
           "budgets of more than two decimals or 16 digits, dates beyond years 1-9999 in UTC (default %(default)s)")
    a("--parser-limits", type=_count, default=_env("parser_limits", d.parser_limits),
      help="serve this many campaigns per client with an unmodelled field past common JSON parsers' limits: "
           "nested 100,000 deep, or an integer of 5,000 digits (default %(default)s)")
    a("--forged-keys", type=_count, default=_env("forged_keys", d.forged_keys),
      help="serve this many campaigns per client with field names that hold a newline and a fake log line, "
           "terminal escapes and line separators, above a NUL, so that they are quarantined and logged "
           "(default %(default)s)")
    a("--unknown-fields", action="store_true", default=_flag("unknown_fields"),
      help="add fields the contract does not name to every campaign")
    a("--changing-fields", action="store_true", default=_flag("changing_fields"),
      help="add a field the contract does not name (revision) whose value changes on every call")
    a("--sync-lost-rate", type=_probability, default=_env("sync_lost_rate", d.sync_lost_rate),
      help="share of sync calls executed whose answer is then never sent (for --hang-seconds): the caller "
           "cannot tell it from a sync that never ran (default %(default)s)")
    a("--honour-idempotency-keys", dest="honour_keys", action="store_true", default=_flag("honour_keys"),
      help="a sync whose Idempotency-Key was seen answers the first result again without executing "
           "(IETF draft-ietf-httpapi-idempotency-key-header)")
    a("--ignore-page", action="store_true", default=_flag("ignore_page"),
      help="answer every page with the first one and has_more true")
    a("--shifting-list", action="store_true", default=_flag("shifting_list"),
      help="page 2 starts with page 1's last campaign again, served anew (its metrics have grown): the list "
           "shifted under the client")
    a("--announced-total", type=_total, default=_env("announced_total", d.announced_total),
      help="the total the list announces: empty for the true count, 'none' to leave it out, or a number "
           "(a wrong one)")
    a("--page-cap", type=_count, default=_env("page_cap", d.page_cap),
      help="serve at most this many campaigns per page whatever limit asks, echoing the limit asked for "
           "(0 = off; default %(default)s)")
    a("--endless", action="store_true", default=_flag("endless"),
      help="the list never ends: every page is full of new campaigns (ids past --campaigns, syncable too), "
           "has_more true; combine with --announced-total none")
    a("--gzip", action="store_true", default=_flag("gzip"),
      help="gzip every JSON answer when the client accepts it")
    a("--redirect-endpoint", choices=("", *ENDPOINTS), default=_env("redirect_endpoint", d.redirect_endpoint),
      help="answer every call of this endpoint with a redirect to the same path on --redirect-to, once "
           "(the redirected call carries redirected=1 and is served)")
    a("--redirect-status", type=int, choices=(301, 302, 303, 307, 308),
      default=_env("redirect_status", d.redirect_status), help="status of those redirects (default %(default)s)")
    a("--redirect-to", default=_env("redirect_to", d.redirect_to),
      help="base URL the redirects point to, or 'self' for this server (default %(default)s)")
    a("--ratelimit-headers", choices=HEADER_STYLES, default=_env("ratelimit_headers", d.ratelimit_headers),
      help="state the rate limit on every API answer: ietf (RateLimit-Policy and RateLimit, draft -11), "
           "ietf-06 (RateLimit-Limit/-Remaining/-Reset), x-delta, x-epoch, x-epoch-ms (X-RateLimit-*, the reset "
           "as seconds from now, epoch seconds, epoch milliseconds), shopify (X-Shopify-Shop-Api-Call-Limit: "
           "used/capacity); none (default)")
    a("--rate-limited-status", type=int, choices=(429, 403, 400), default=_env("rate_limited_status", 429),
      help="how a request over the limit is answered: 429 (default), or 403 / 400 with Retry-After and a "
           "secondary-rate-limit message and no other header, as GitHub does")
    a("--limit-schedule", type=_schedule, default=_env("limit_schedule", ""),
      help="change the rate limit at given times: SECONDS:LIMIT[,SECONDS:LIMIT...], seconds since the budget's "
           "first request at the real clock (scaled); a new limit applies to requests that arrive after the change")
    a("--shared-budget", action="store_true", default=_flag("shared_budget"),
      help="one rate budget per account across all its clients (named by pk in the ietf headers)")
    a("--partitions", type=_count, default=_env("partitions", d.partitions),
      help="spread the clients over this many rate budgets, each shared by the clients in it and named by "
           "pk in the ietf headers (0 = off; default %(default)s)")
    a("--partition-every", type=_count, default=_env("partition_every", d.partition_every),
      help="with --partitions: move a client to the next partition after every this many of its requests, "
           "a platform that rebalances its accounts (0 = never; default %(default)s)")
    a("--reset-early", type=float, default=_env("reset_early", d.reset_early),
      help="announce resets this many seconds earlier than they come, a platform that lies a little "
           "(default %(default)s)")
    a("--sync-fail-first", type=_count, default=_env("sync_fail_first", d.sync_fail_first),
      help="answer the first N sync calls of every tenth campaign (campaign_10, campaign_20...) with a 503, the "
           "next ones normally: a campaign that needs more tries than one pass gives it (default %(default)s)")
    a("--hold-syncs", type=int, default=_env("hold_syncs", d.hold_syncs),
      help="test knob: answer this many sync calls per client, then hold every later one without an "
           "answer until POST /__mock__/release, so a test finds a run still going (-1 = off; "
           "default %(default)s)")
    a("--hold-client", default=_env("hold_client", d.hold_client),
      help="with --hold-syncs: hold only this X-Client-ID's syncs (default: every client's)")
    a("--seed", type=int, default=_env("seed", None),
      help="random seed: same seed and same requests give the same faults")
    a("--quirks", action="store_true", default=_flag("quirks"),
      help="behave exactly like the inherited simulator: see docs/reference.md (fault rates default to 0; "
           "explicit ones still apply)")
    a("--crawler-env", default=_env("crawler_env", d.crawler_env),
      help="also write the crawler settings that match this simulator (its URL, time scale and rate) to "
           "this file, as NAME=value lines")
    a("--accounts", type=_accounts, default=_env("accounts", DEMO_ACCOUNTS),
      help="accepted credentials as email:password[,...]; prefer the environment "
           "variable so passwords stay out of the process list (default: the demo account)")
    return p


def parse_config(argv: list[str] | None = None) -> MockConfig:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    values = vars(parser.parse_args(argv))
    if isinstance(values["accounts"], str):
        values["accounts"] = _accounts(values["accounts"])
    if isinstance(values["limit_schedule"], str):
        values["limit_schedule"] = _schedule(values["limit_schedule"])
    for name in ("port", "rate_limit", "campaigns", "max_page_size", "hostile_names", "malformed",
                 "out_of_range", "implausible", "unknown_statuses", "hold_syncs", "redirect_status",
                 "missing_values", "odd_values", "parser_limits", "page_cap", "partitions", "partition_every",
                 "forged_keys", "sync_fail_first"):
        values[name] = int(values[name])
    for name in ("time_scale", "rate_window", "retry_after", "fault_retry_after", "hang_seconds", "sync_delay",
                 "token_lifetime", "token_early_expiry", "numeric_strings", "reset_early"):
        values[name] = float(values[name])
    if values["seed"] is not None:
        values["seed"] = int(values["seed"])
    # An explicit rate always applies; otherwise the default profile, unless
    # --quiet or --quirks (the inherited simulator injected no random faults).
    profile = {} if values.pop("quiet") or values["quirks"] else DEFAULT_FAULTS
    faults = {}
    for endpoint in ENDPOINTS:
        for fault in FAULTS:
            given = values.pop(fault_knob(endpoint, fault))
            rate = float(given) if given is not None else profile.get(f"{endpoint}_{fault}", 0.0)
            if rate:
                faults[f"{endpoint}_{fault}"] = rate
    for endpoint in ENDPOINTS:
        total = sum(rate for name, rate in faults.items() if name.startswith(endpoint + "_"))
        if total > 1.0:
            parser.error(f"the {endpoint} fault rates add up to {total:g}, more than 1")
    return MockConfig(faults=faults, **values)
