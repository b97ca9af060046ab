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
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

# Ids go into a URL path and a primary key: letters, digits and a few separators.
USABLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
KNOWN_STATUSES = frozenset({"active", "paused", "completed", "draft", "archived"})
INT64 = 2**63 - 1
MAX_BUDGET = Decimal(10) ** 14  # NUMERIC(16, 2)
CENT = Decimal("0.01")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidRecord(ValueError):
    """The record cannot be stored; ``campaign_id`` is its id when that is usable
    (the campaign can still be synced on the platform)."""

    def __init__(self, reason: str, campaign_id: str | None = None):
        super().__init__(reason)
        self.campaign_id = campaign_id


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _budget(value: Any) -> Decimal:
    _not_bool(value)
    if isinstance(value, float):
        value = repr(value)  # 0.1 -> Decimal("0.1"), not its binary expansion
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    if abs(number) >= MAX_BUDGET:
        raise ValueError(f"out of the storable range (|budget| < 10^14): {value!r:.40}")
    return number.quantize(CENT)


def _campaign_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USABLE_ID.match(value):
        raise ValueError("not a usable id (letters, digits, '_', '.', ':', '-'; at most 128)")
    return value


Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=-INT64 - 1, le=INT64)]
Text = Annotated[str, Field(min_length=1)]


class Campaign(BaseModel):
    """A campaign as we store it: typed columns, the raw record, the flags."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, str_strip_whitespace=False)

    campaign_id: Annotated[str, BeforeValidator(_campaign_id)] = Field(alias="id")
    name: Text
    status: Text
    budget: Annotated[Decimal, BeforeValidator(_budget)]
    impressions: Count
    clicks: Count
    conversions: Count
    created_at: datetime
    raw: str = ""
    quality_flags: tuple[str, ...] = ()


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
        usable_id = _campaign_id(record.get("id"))
    except ValueError:
        raise InvalidRecord(f"id {record.get('id')!r:.60}: not a usable id") from None
    unstorable = _unstorable(record)
    if unstorable:
        raise InvalidRecord(f"{unstorable}: the database cannot store it", usable_id)
    try:
        campaign = Campaign.model_validate(record)
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc), usable_id) from None
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
        return path if _UNSTORABLE.search(value) else None
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


def storable_text(text: str) -> str:
    """``text`` with what a database refuses (NUL, unpaired surrogates) escaped."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in error["loc"]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        shown = "missing" if error["type"] == "missing" else f"{error.get('input')!r:.40}"
        parts.append(f"{field} {shown}: {message}")
    return "; ".join(parts)
