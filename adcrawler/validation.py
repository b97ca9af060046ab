"""From a platform record to a campaign we can store (pure logic, pydantic v2).

Keep what the platform sends:

- a field that is absent or ``null`` is unknown: stored as NULL (never 0) and
  flagged ``missing_<field>``; the campaign is stored and synced;
- counts and budgets sent as numeric strings (``"1072"``) or integral numbers
  (``1072.0``) are converted without loss; booleans are not numbers;
- a budget with more than two decimals is rounded to the cent and flagged
  ``budget_rounded`` (``raw`` keeps it as sent);
- fields we do not model are kept: the whole record is stored, as sent,
  beside the typed columns (``raw``), and a change in it changes the row;
- statuses we do not know are stored as sent, and flagged;
- implausible values (clicks above impressions, conversions above clicks,
  negative counts or budget, a date without a time zone) are stored and
  flagged, never rejected.

Quarantine (:class:`InvalidRecord`) only what cannot be stored: a record that
is not a JSON object, has no usable id, or has a field that no column can hold
(a count that is not a 64-bit integer, a budget beyond ``NUMERIC(16, 2)``, a
timestamp that is not one or lies outside years 1-9999 in UTC, text where a
number belongs), or carries text the database refuses (NUL, unpaired
surrogates, NaN). Both backends accept and refuse the same records: the limits
are checked here, not left to each database. For any JSON value,
:func:`validate_campaign` returns a :class:`Campaign` or raises
:class:`InvalidRecord`, nothing else (tested with generated inputs).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timezone
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from adcrawler.items import CENT, UNSTORABLE, USABLE_ID, Campaign, storable_text, usable_id

KNOWN_STATUSES = frozenset({"active", "paused", "completed", "draft", "archived"})

__all__ = ["USABLE_ID", "Campaign", "InvalidRecord", "quality_flags", "record_key", "storable_text",
           "validate_campaign"]


class InvalidRecord(ValueError):
    """The record cannot be stored; ``campaign_id`` is its id when that is usable
    (the campaign can still be synced on the platform)."""

    def __init__(self, reason: str, campaign_id: str | None = None):
        super().__init__(reason)
        self.campaign_id = campaign_id


# Fields a record may lack: stored as NULL and flagged missing_<field>.
OPTIONAL = ("name", "status", "budget", "impressions", "clicks", "conversions", "created_at")


def record_key(record: Any, text: str = "") -> str:
    """What makes two records the same campaign: the id as sent, else the content (its text, when given)."""
    if isinstance(record, dict):
        cid = record.get("id")
        if isinstance(cid, (str, int)) and not isinstance(cid, bool):
            return f"id:{cid}"
    text = text or json.dumps(record, sort_keys=True, default=str, ensure_ascii=True)
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()


def validate_campaign(record: Any, text: str = "") -> Campaign:
    """The storable campaign in ``record``, or :class:`InvalidRecord` saying why not.
    ``text``: the record as the platform sent it, kept as ``raw`` (else it is encoded again)."""
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
    flags = quality_flags(campaign)
    update: dict[str, Any] = {}
    created_at = campaign.created_at
    if created_at is not None:
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=timezone.utc)
            flags.append("created_at_without_timezone")
        try:  # what both backends store: an instant of years 1-9999 in UTC
            update["created_at"] = created_at.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidRecord(f"created_at {record.get('created_at')!r:.40}: outside years 1-9999 in UTC",
                                cid) from None
    if campaign.budget is not None:
        update["budget"] = campaign.budget.quantize(CENT) + 0  # + 0: no negative zero
        if update["budget"] != campaign.budget:
            flags.append("budget_rounded")
    if text:
        update["raw"] = text
    else:
        try:
            update["raw"] = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_exact)
        except (ValueError, RecursionError):
            raise InvalidRecord("the record cannot be encoded as JSON again", cid) from None
    update["quality_flags"] = tuple(sorted(flags))
    return campaign.model_copy(update=update)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # only when no text was given (tests); read_page keeps the text
    raise TypeError(type(value).__name__)


def quality_flags(campaign: Campaign) -> list[str]:
    """What looks wrong but is kept: the flags stored on the row and counted in the stats."""
    flags = [f"missing_{name}" for name in OPTIONAL if getattr(campaign, name) is None]
    impressions, clicks, conversions = campaign.impressions, campaign.clicks, campaign.conversions
    if clicks is not None and impressions is not None and clicks > impressions:
        flags.append("clicks_exceed_impressions")
    if conversions is not None and clicks is not None and conversions > clicks:
        flags.append("conversions_exceed_clicks")
    for name in ("impressions", "clicks", "conversions", "budget"):
        number = getattr(campaign, name)
        if number is not None and number < 0:
            flags.append(f"negative_{name}")
    if campaign.status is not None and campaign.status not in KNOWN_STATUSES:
        flags.append("unknown_status")
    return flags


def _unstorable(record: Any) -> str | None:
    """The path of the first value no column or JSON document can hold, if any.
    Without recursion: a record may be nested as deep as the parser reads."""
    stack: list[tuple[Any, str]] = [(record, "record")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return path
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path
        elif isinstance(value, Decimal):
            # PostgreSQL's numeric: at most 131,072 digits before the point and 16,383 after.
            if value.adjusted() >= 131_072 or value.as_tuple().exponent < -16_383:
                return path
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if UNSTORABLE.search(key):
                    return path
                stack.append((item, key if path == "record" else f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in error["loc"]) or "record"
        message = error["msg"].removeprefix("Value error, ")
        shown = "missing" if error["type"] == "missing" else f"{error.get('input')!r:.40}"
        parts.append(f"{field} {shown}: {message}")
    return "; ".join(parts)
