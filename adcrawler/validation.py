"""Validation of campaign records from the API (pure logic).

A record that fails goes to quarantine with the reason; it never becomes a
campaign row and never stops the rest of its page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

CAMPAIGN_ID = re.compile(r"^campaign_[0-9]{1,12}$")
STATUSES = frozenset({"active", "paused", "completed", "draft", "archived"})
MAX_NAME = 10_000


class InvalidRecord(ValueError):
    """A record broke a rule; the message names the field and the rule."""


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    status: str
    budget: Decimal
    impressions: int
    clicks: int
    conversions: int
    created_at: datetime


def _count(record: dict, field: str) -> int:
    value = record.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidRecord(f"{field} is not an integer: {value!r:.40}")
    if value < 0:
        raise InvalidRecord(f"{field} is negative: {value}")
    return value


def validate_campaign(record: Any) -> Campaign:
    """Return the typed campaign or raise :class:`InvalidRecord`."""
    if not isinstance(record, dict):
        raise InvalidRecord("record is not a JSON object")
    cid = record.get("id")
    if not isinstance(cid, str) or not CAMPAIGN_ID.match(cid):
        raise InvalidRecord(f"id does not look like campaign_<n>: {cid!r:.40}")
    name = record.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRecord("name is missing or empty")
    if len(name) > MAX_NAME:
        raise InvalidRecord(f"name is longer than {MAX_NAME} characters")
    if "\x00" in name:
        raise InvalidRecord("name contains a NUL character")
    status = record.get("status")
    if status not in STATUSES:
        raise InvalidRecord(f"status is not one of {sorted(STATUSES)}: {status!r:.40}")
    raw_budget = record.get("budget")
    if isinstance(raw_budget, bool) or not isinstance(raw_budget, (int, float, str)):
        raise InvalidRecord(f"budget is not a number: {raw_budget!r:.40}")
    try:
        budget = Decimal(str(raw_budget))
    except InvalidOperation:
        raise InvalidRecord(f"budget is not a number: {raw_budget!r:.40}") from None
    if not budget.is_finite() or budget < 0:
        raise InvalidRecord(f"budget is negative or not finite: {raw_budget!r:.40}")
    impressions = _count(record, "impressions")
    clicks = _count(record, "clicks")
    conversions = _count(record, "conversions")
    if clicks > impressions:
        raise InvalidRecord(f"clicks ({clicks}) exceed impressions ({impressions})")
    if conversions > clicks:
        raise InvalidRecord(f"conversions ({conversions}) exceed clicks ({clicks})")
    raw_created = record.get("created_at")
    try:
        created_at = datetime.fromisoformat(str(raw_created).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRecord(f"created_at is not an ISO 8601 date: {raw_created!r:.40}") from None
    if created_at.tzinfo is None:
        raise InvalidRecord("created_at has no time zone")
    return Campaign(cid, name, status, budget.quantize(Decimal("0.01")), impressions, clicks,
                    conversions, created_at)
