"""Deterministic campaign data for the simulator.

A campaign's identity, name, budget and creation date depend only on
(client, number); its metrics grow each time it is served, as a live
campaign's do. Optional hostile names and malformed records exercise the
crawler's encoding, injection and validation paths.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

HOSTILE_NAMES = [
    "Robert'); DROP TABLE campaigns;--",
    'Quote "double" and \'single\' and `back`',
    "Semi; colon; -- comment /* block */",
    "SELECT * FROM campaigns WHERE 1=1 OR ''=''",
    "Percent %s %(name)s {0} {} \\ backslash",
    "Emoji \U0001f680\U0001f525 \u00e9\u00e8 \u4e2d\u6587 \u202eRTL",
    "Long " + "x" * 5000,
]

# Each entry breaks one validation rule; the crawler must quarantine it.
MALFORMED = [
    ("negative clicks", {"clicks": -5}),
    ("clicks above impressions", {"clicks": 10**9}),
    ("non-numeric budget", {"budget": "lots"}),
    ("unparsable created_at", {"created_at": "yesterday-ish"}),
    ("unknown status", {"status": "exploded"}),
    ("bad id", {"id": "campaign_; DROP"}),
    ("missing name", {"name": None}),
]

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


def corrupt(campaign: dict, k: int) -> dict:
    """Break rule ``k`` of :data:`MALFORMED` in a copy of ``campaign``."""
    _, change = MALFORMED[k % len(MALFORMED)]
    return {**campaign, **change}
