"""From a platform record to a campaign we can store (pure logic, pydantic v2).

Keep what the platform sends:

- counts and budgets sent as numeric strings (``"1072"``) or integral floats
  (``1072.0``) are converted without loss; booleans are not numbers;
- fields we do not model are kept: the whole record is stored as JSON beside
  the typed columns (``raw``);
- statuses we do not know are stored as sent, and flagged;
- implausible values (clicks above impressions, conversions above clicks,
  negative counts or budget, a date without a time zone) are stored and
  flagged, never rejected.

Quarantine (:class:`InvalidRecord`) only what cannot be stored: a record that
is not a JSON object, has no usable id, lacks a modelled field or has one that
no column can hold (a 64-bit integer, ``NUMERIC(16, 2)``, a timestamp), or
carries text the database refuses (NUL, unpaired surrogates, NaN). For any JSON
value, :func:`validate_campaign` returns a :class:`Campaign` or raises
:class:`InvalidRecord`, nothing else (tested with generated inputs).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timezone
from typing import Any

from pydantic import ValidationError

from adcrawler.items import UNSTORABLE, USABLE_ID, Campaign, storable_text, usable_id

KNOWN_STATUSES = frozenset({"active", "paused", "completed", "draft", "archived"})

__all__ = ["USABLE_ID", "Campaign", "InvalidRecord", "quality_flags", "record_key", "storable_text",
           "validate_campaign"]


class InvalidRecord(ValueError):
    """The record cannot be stored; ``campaign_id`` is its id when that is usable
    (the campaign can still be synced on the platform)."""

    def __init__(self, reason: str, campaign_id: str | None = None):
        super().__init__(reason)
        self.campaign_id = campaign_id


def record_key(record: Any) -> str:
    """What makes two records the same campaign: the id as sent, else the content."""
    if isinstance(record, dict):
        cid = record.get("id")
        if isinstance(cid, (str, int)) and not isinstance(cid, bool):
            return f"id:{cid}"
    text = json.dumps(record, sort_keys=True, default=str, ensure_ascii=True)
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()


def validate_campaign(record: Any) -> Campaign:
    """The storable campaign in ``record``, or :class:`InvalidRecord` saying why not."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"record is not a JSON object: {type(record).__name__}")
    try:
        cid = usable_id(record.get("id"))
    except ValueError:
        raise InvalidRecord(f"id {record.get('id')!r:.60}: not a usable id") from None
    unstorable = _unstorable(record)
    if unstorable:
        raise InvalidRecord(f"{unstorable}: the database cannot store it", cid)
    try:
        campaign = Campaign.model_validate(record)
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc), cid) from None
    created_at = campaign.created_at
    flags = quality_flags(campaign)
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
        flags.append("created_at_without_timezone")
    return campaign.model_copy(update={
        "created_at": created_at,
        "raw": json.dumps(record, ensure_ascii=False, separators=(",", ":")),
        "quality_flags": tuple(sorted(flags)),
    })


def quality_flags(campaign: Campaign) -> list[str]:
    """What looks wrong but is kept: the flags stored on the row and counted in the stats."""
    flags = []
    if campaign.clicks > campaign.impressions:
        flags.append("clicks_exceed_impressions")
    if campaign.conversions > campaign.clicks:
        flags.append("conversions_exceed_clicks")
    for name in ("impressions", "clicks", "conversions", "budget"):
        if getattr(campaign, name) < 0:
            flags.append(f"negative_{name}")
    if campaign.status not in KNOWN_STATUSES:
        flags.append("unknown_status")
    return flags


def _unstorable(value: Any, path: str = "record") -> str | None:
    """The path of the first value no column or JSON document can hold, if any."""
    if isinstance(value, str):
        return path if UNSTORABLE.search(value) else None
    if isinstance(value, float):
        return path if not math.isfinite(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, path) or _unstorable(item, f"{key}" if path == "record" else f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unstorable(item, f"{path}[{i}]")
            if found:
                return found
    return None


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in error["loc"]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        shown = "missing" if error["type"] == "missing" else f"{error.get('input')!r:.40}"
        parts.append(f"{field} {shown}: {message}")
    return "; ".join(parts)
