"""Knobs of the Ad Platform simulator: defaults, flags and environment variables.

Every knob is a command-line flag and an environment variable ``MOCK_API_<NAME>``
(the flag wins). Durations are given in the platform's real seconds and multiplied
by ``time_scale`` when served, so tests run the real protocol faster.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

DEMO_ACCOUNTS = "admin@mixoads.com:SuperSecret123!"


@dataclass
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 3001
    time_scale: float = 1.0
    rate_limit: int = 10
    rate_window: float = 60.0
    retry_after: float = 60.0
    list_503_rate: float = 0.2
    list_hang_rate: float = 0.1
    sync_503_rate: float = 0.2
    sync_hang_rate: float = 0.1
    list_garbage_rate: float = 0.0
    hang_seconds: float = 3600.0
    sync_delay: float = 2.0
    token_lifetime: float = 3600.0
    token_early_expiry: float = 0.0
    campaigns: int = 100
    max_page_size: int = 100
    hostile_names: int = 0
    malformed: int = 0
    seed: int | None = None
    quirks: bool = False
    accounts: dict[str, str] = field(default_factory=dict)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale


def _env(name: str, default: object) -> object:
    return os.environ.get(f"MOCK_API_{name.upper()}", default)


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


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
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
    for endpoint in ("list", "sync"):
        a(f"--{endpoint}-503-rate", type=_probability,
          default=_env(f"{endpoint}_503_rate", getattr(d, f"{endpoint}_503_rate")),
          help=f"probability that a {endpoint} call answers 503 (default %(default)s)")
        a(f"--{endpoint}-hang-rate", type=_probability,
          default=_env(f"{endpoint}_hang_rate", getattr(d, f"{endpoint}_hang_rate")),
          help=f"probability that a {endpoint} call never answers (default %(default)s)")
    a("--list-garbage-rate", type=_probability, default=_env("list_garbage_rate", d.list_garbage_rate),
      help="probability that a list call answers 200 with a body that is not JSON (default %(default)s)")
    a("--hang-seconds", type=_positive, default=_env("hang_seconds", d.hang_seconds),
      help="how long a hanging request is held, unscaled (default %(default)s)")
    a("--sync-delay", type=float, default=_env("sync_delay", d.sync_delay),
      help="seconds a sync call takes (default %(default)s)")
    a("--token-lifetime", type=_positive, default=_env("token_lifetime", d.token_lifetime),
      help="token lifetime in seconds (default %(default)s)")
    a("--token-early-expiry", type=float, default=_env("token_early_expiry", d.token_early_expiry),
      help="tokens really expire this many seconds before the expires_in they announce (default %(default)s)")
    a("--campaigns", type=int, default=_env("campaigns", d.campaigns),
      help="campaigns per client (default %(default)s)")
    a("--max-page-size", type=int, default=_env("max_page_size", d.max_page_size),
      help="largest accepted limit (default %(default)s)")
    a("--hostile-names", type=int, default=_env("hostile_names", d.hostile_names),
      help="give this many campaigns names with quotes, SQL, emoji, long strings (default %(default)s)")
    a("--malformed", type=int, default=_env("malformed", d.malformed),
      help="serve this many campaigns per client with invalid fields (default %(default)s)")
    a("--seed", type=int, default=_env("seed", None),
      help="random seed: same seed and same requests give the same faults")
    a("--quirks", action="store_true", default=str(_env("quirks", "")).lower() in ("1", "true", "yes"),
      help="behave like the inherited simulator: retry_after only in the body, tokens not "
           "validated, unbounded limit, has_more = page < 10, every 5th list call 503, no other faults")
    a("--accounts", type=_accounts, default=_env("accounts", DEMO_ACCOUNTS),
      help="accepted credentials as email:password[,...]; prefer the environment "
           "variable so passwords stay out of the process list (default: the demo account)")
    return p


FAULT_KNOBS = ("list_503_rate", "list_hang_rate", "sync_503_rate", "sync_hang_rate")


def parse_config(argv: list[str] | None = None) -> MockConfig:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    values = vars(args)
    if isinstance(values["accounts"], str):
        values["accounts"] = _accounts(values["accounts"])
    for name in ("port", "rate_limit", "campaigns", "max_page_size", "hostile_names", "malformed"):
        values[name] = int(values[name])
    for name in ("time_scale", "rate_window", "retry_after", "hang_seconds", "sync_delay",
                 "token_lifetime", "token_early_expiry", "list_garbage_rate", *FAULT_KNOBS):
        values[name] = float(values[name])
    if values["seed"] is not None:
        values["seed"] = int(values["seed"])
    if values["quirks"]:
        # The inherited simulator failed only list calls, deterministically; a fault
        # knob given explicitly (flag or environment) still applies.
        flags = {arg.split("=")[0] for arg in argv}
        explicit = {k for k in FAULT_KNOBS
                    if f"--{k.replace('_', '-')}" in flags or f"MOCK_API_{k.upper()}" in os.environ}
        for knob in FAULT_KNOBS:
            if knob not in explicit:
                values[knob] = 0.0
    return MockConfig(**values)
