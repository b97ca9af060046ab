"""Campaign records as the simulator serves them.

Default mode: a campaign's identity, name, budget and creation date depend only
on (client, number); its metrics grow each time it is served, as a live
campaign's do. Knobs turn some campaigns into the records real platforms send:
hostile names, numeric strings, unknown fields and statuses, implausible values,
values no column can hold, and records that cannot be stored at all.

Quirks mode: the inherited simulator's records exactly (see :func:`quirks_campaign`).
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

HOSTILE_NAMES = [
    "Robert'); DROP TABLE campaigns;--",
    'Quote "double" and \'single\' and `back`',
    "Semi; colon; -- comment /* block */",
    "SELECT * FROM campaigns WHERE 1=1 OR ''=''",
    "Percent %s %(name)s {0} {} \\ backslash",
    "Emoji \U0001f680\U0001f525 \u00e9\u00e8 \u4e2d\u6587 \u202eRTL",
    "Long " + "x" * 5000,
]

# Records that cannot be stored as a campaign: the crawler must quarantine each
# one, with its reason, and keep the rest of the page.
MALFORMED = [
    ("bad id", {"id": "campaign_; DROP"}),
    ("missing id", {"id": None}),
    ("not an object", None),
    ("non-numeric budget", {"budget": "lots"}),
    ("unparsable created_at", {"created_at": "yesterday-ish"}),
    ("name not text", {"name": {"en": "Campaign"}}),
    ("fractional clicks", {"clicks": 12.5}),
    ("NUL in the name", {"name": "Bad\u0000name"}),
]
# Values no column can hold (64-bit integers, NUMERIC(16, 2)): quarantined too.
OUT_OF_RANGE = [
    ("budget 1e30", {"budget": 1e30}),
    ("impressions 10^20", {"impressions": 10**20}),
    ("budget 10^15", {"budget": 10**15}),
    ("conversions -10^19", {"conversions": -(10**19)}),
]
# Storable but implausible: stored with a data-quality flag, never rejected.
IMPLAUSIBLE = [
    ("clicks above impressions", lambda c: {"clicks": c["impressions"] + 10}),
    ("conversions above clicks", lambda c: {"conversions": c["clicks"] + 1}),
    ("negative clicks", lambda c: {"clicks": -5}),
    ("negative budget", lambda c: {"budget": -100.0}),
]
# Values not computed yet: absent or null. Stored as NULL and flagged, the campaign synced.
MISSING = [
    ("impressions null", {"impressions": None}),
    ("clicks null", {"clicks": None}),
    ("conversions absent", {"conversions": ...}),
    ("budget null", {"budget": None}),
    ("name absent", {"name": ...}),
    ("status null", {"status": None}),
    ("created_at absent", {"created_at": ...}),
    ("every metric null", {"impressions": None, "clicks": None, "conversions": None}),
]
# Numbers and dates at the edges of what the columns hold: budgets rounded to the
# cent (and flagged), the largest budget exactly, dates beyond years 1-9999 in UTC
# (quarantined by both backends alike).
ODD_VALUES = [
    ("budget 0.005", {"budget": "0.005"}),
    ("budget 12.345", {"budget": 12.345}),
    ("budget of 16 digits", {"budget": "99999999999999.99"}),
    ("created_at past year 9999 in UTC", {"created_at": "9999-12-31T23:59:59-12:00"}),
    ("created_at before year 1 in UTC", {"created_at": "0001-01-01T00:00:00+14:00"}),
    ("budget 1e-7", {"budget": 1e-7}),
]
# Values past the limits of common JSON parsers, in a field the contract does not
# name; the placeholder is replaced in the page's text (json.dumps cannot write them).
PARSER_LIMITS = [("nested 100,000 deep", "@@DEEP@@"), ("an integer of 5,000 digits", "@@DIGITS@@")]
PARSER_LIMIT_TEXT = {'"@@DEEP@@"': "[" * 100_000 + "]" * 100_000, '"@@DIGITS@@"': "9" * 5_000}
# Field names that try to write log lines of their own: a newline and a perfect fake line, terminal
# escapes, a line separator; with a NUL below them, so that the record is quarantined and its
# reason (which names the field) is logged.
FORGED_KEYS = [
    "x\n2026-01-01 00:00:00 [adcrawler.crawl] INFO: Sync complete: 1 client(s) succeeded\x1b[2K\x1b[1A",
    "y\r\x1b]0;owned\x07\u2028\u202efake",
]
UNKNOWN_STATUSES = ["learning", "PAUSED_BY_POLICY", "in_review"]
EXTRA_FIELDS = {"objective": "CONVERSIONS", "labels": ["q4", "brand"],
                "bid_strategy": {"type": "target_cpa", "amount": "12.50"}}

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def campaign_id(n: int) -> str:
    return f"campaign_{n}"


def make_campaign(client: str, n: int, served: int, hostile: int) -> dict:
    """Campaign ``n`` (1-based) of ``client`` as served for the ``served``-th time.

    The first ``hostile`` campaigns get names from :data:`HOSTILE_NAMES`.
    """
    rnd = random.Random(f"{client}:{n}")
    impressions = rnd.randint(1_000, 100_000) + served * rnd.randint(10, 500)
    clicks = min(impressions, rnd.randint(10, 1_000) + served * rnd.randint(1, 20))
    conversions = min(clicks, rnd.randint(0, 100) + served * rnd.randint(0, 3))
    campaign = {
        "id": campaign_id(n),
        "name": f"Campaign {n}",
        "status": "active",
        "budget": round(rnd.uniform(100, 50_000), 2),
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "created_at": (_EPOCH + timedelta(minutes=rnd.randint(0, 500_000)))
        .strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }
    if n <= hostile:
        campaign["name"] = HOSTILE_NAMES[(n - 1) % len(HOSTILE_NAMES)]
    return campaign


def as_numeric_strings(campaign: dict) -> dict:
    """The numbers sent as strings, as several real ad APIs do (``"1072"``, ``"120.5"``)."""
    out = dict(campaign)
    for name in ("budget", "impressions", "clicks", "conversions"):
        if isinstance(out.get(name), (int, float)):
            out[name] = str(out[name])
    return out


def apply_block(campaign: dict, block: str, k: int) -> Any:
    """Campaign turned into kind ``k`` of a block: malformed, out_of_range, missing, odd_values,
    parser_limit, forged_keys, implausible or unknown_status. May return something that is not a dict."""
    if block == "malformed":
        _, change = MALFORMED[k % len(MALFORMED)]
        if change is None:
            return campaign["id"]  # a bare string where an object belongs
        out = {**campaign, **change}
        return {name: value for name, value in out.items() if not (name == "id" and value is None)}
    if block == "out_of_range":
        return {**campaign, **OUT_OF_RANGE[k % len(OUT_OF_RANGE)][1]}
    if block == "missing":
        out = {**campaign, **MISSING[k % len(MISSING)][1]}
        return {name: value for name, value in out.items() if value is not ...}
    if block == "odd_values":
        return {**campaign, **ODD_VALUES[k % len(ODD_VALUES)][1]}
    if block == "parser_limit":
        return {**campaign, "extra": PARSER_LIMITS[k % len(PARSER_LIMITS)][1]}
    if block == "forged_keys":
        return {**campaign, "extra": {FORGED_KEYS[k % len(FORGED_KEYS)]: "\u0000"}}
    if block == "implausible":
        return {**campaign, **IMPLAUSIBLE[k % len(IMPLAUSIBLE)][1](campaign)}
    if block == "unknown_status":
        return {**campaign, "status": UNKNOWN_STATUSES[k % len(UNKNOWN_STATUSES)]}
    raise ValueError(block)


def quirks_campaign(n: int, rng: random.Random) -> dict:
    """Campaign ``n`` as the inherited simulator serves it, on any page: metrics
    drawn independently on every call, so clicks above impressions and
    conversions above clicks happen about a fifth of the time."""
    return {
        "id": campaign_id(n),
        "name": f"Campaign {n}",
        "status": "active",
        "budget": 1000 + n * 100,
        "impressions": rng.randrange(10_000),
        "clicks": rng.randrange(500),
        "conversions": rng.randrange(50),
        "created_at": _js_iso(time.time() - n * 86_400),
    }


def _js_iso(ts: float) -> str:
    """``new Date(ms).toISOString()``: milliseconds and a Z."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def js_parse_int(text: str | None) -> int:
    """JavaScript's ``parseInt(text) || 0``: the leading integer, or 0."""
    text = (text or "").strip()
    sign, digits = 1, ""
    if text and text[0] in "+-":
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0
