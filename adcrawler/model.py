"""A campaign's fields, declared once (the SQL, the history row and the spool derive from them), and the
validation of what the platform sends: kept as sent (``raw``), flagged when implausible, NULL when
absent, quarantined (:class:`InvalidRecord`) only when no column of either backend can hold it."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

USABLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
INT64 = 2**63 - 1
MAX_BUDGET = Decimal(10) ** 14  # NUMERIC(16, 2)
CENT = Decimal("0.01")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Column:
    """How a field is stored: ``type`` is a column type of the migrations (or ``flags``, a JSON
    array); ``key`` its place in the primary key (0: none); a change in a ``compared`` field
    rewrites the row; ``history`` names its column in ``campaign_metrics``, if it has one."""

    type: str
    key: int = 0
    compared: bool = True
    history: str | None = None


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _budget(value: Any) -> Decimal | None:
    """The budget exactly as sent (validation then rounds it to the cent, and flags it when that changed it)."""
    if value is None:
        return None
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
    return number


_REFUSE = object()


def usable_id(value: Any, default: Any = _REFUSE) -> Any:
    """``value`` as a campaign id (it goes into a URL path and a primary key), else ``default``
    (ValueError when none is given: pydantic's validator)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and USABLE_ID.match(value):
        return value
    if default is _REFUSE:
        raise ValueError("not a usable id (letters, digits, '_', '.', ':', '-'; at most 128)")
    return default


Int64 = Annotated[int, Field(ge=-INT64 - 1, le=INT64)]
Count = Annotated[Int64 | None, BeforeValidator(_not_bool)]


class Campaign(BaseModel):
    """A campaign as the platform sent it, validated: typed fields, the raw record, the flags."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, str_strip_whitespace=False)

    campaign_id: Annotated[str, BeforeValidator(usable_id), Column("text", key=2)] = Field(alias="id")
    # Absent or null: None, stored as NULL (the platform may not have computed it yet).
    name: Annotated[str | None, Column("text")] = None
    status: Annotated[str | None, Column("text", history="status")] = None
    budget: Annotated[Decimal | None, BeforeValidator(_budget), Column("money", history="budget")] = None
    impressions: Annotated[Count, Column("bigint", history="impressions")] = None
    clicks: Annotated[Count, Column("bigint", history="clicks")] = None
    conversions: Annotated[Count, Column("bigint", history="conversions")] = None
    created_at: Annotated[datetime | None, Column("ts")] = None
    # The record exactly as the platform sent it (JSON text): a change in a
    # field we do not model changes the row too.
    raw: Annotated[str, Column("json")] = ""
    quality_flags: Annotated[tuple[str, ...], Column("flags", history="quality_flags")] = ()


class CampaignItem(Campaign):
    """One campaign of one client, with the outcome of this run's sync call."""

    client_id: Annotated[str, Column("text", key=1)]
    fetched_at: Annotated[datetime, Column("ts", compared=False, history="captured_at")]
    sync_status: Annotated[str, Column("text", history="sync_status")]  # "synced" or "failed"
    synced_at: Annotated[datetime | None, Column("ts")] = None
    sync_error: Annotated[str | None, Column("text")] = None

    @classmethod
    def of(cls, client_id: str, campaign: Campaign, fetched_at: datetime, **sync: Any) -> "CampaignItem":
        # Already validated: built without validating again.
        return cls.model_construct(client_id=client_id, fetched_at=fetched_at, **dict(campaign), **sync)


def columns(model: type[BaseModel] = CampaignItem) -> dict[str, Column]:
    """The stored fields of ``model`` and how each is stored, in declaration order."""
    return {name: column for name, info in model.model_fields.items() for column in info.metadata
            if isinstance(column, Column)}


class RejectedRecord(BaseModel):
    """A record that cannot be stored as a campaign, kept verbatim with the reason."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    campaign_id: str | None  # the id as sent, when there was one
    reason: str
    payload: str  # the raw record as JSON (ASCII, so any database can hold it)
    seen_at: datetime

    @classmethod
    def of(cls, client_id: str, record: Any, reason: str, seen_at: datetime, text: str = "",
           cid: Any = None) -> "RejectedRecord":
        """``record`` quarantined for ``reason``; ``text``: the record as sent (kept verbatim), and
        ``cid`` its id when the record itself could not be decoded."""
        cid = record.get("id") if isinstance(record, dict) else cid
        campaign_id = str(cid)[:200] if isinstance(cid, (str, int)) and not isinstance(cid, bool) else None
        payload = storable_text(text) if text else json.dumps(record, ensure_ascii=True, default=str)
        return cls(client_id=client_id, campaign_id=campaign_id and storable_text(campaign_id),
                   reason=storable_text(reason)[:1000], seen_at=seen_at, payload=payload)

    @property
    def payload_sha1(self) -> str:
        return hashlib.sha1(self.payload.encode()).hexdigest()

    @property
    def problem(self) -> str:
        """What an operator is alerted about once: this campaign (or this payload) refused for this reason."""
        return problem_key(self.campaign_id, self.payload_sha1, self.reason)


def problem_key(campaign_id: str | None, payload_sha1: str, reason: str) -> str:
    return f"{campaign_id or 'sha1:' + payload_sha1}\n{reason}"


def storable_text(text: str) -> str:
    """``text`` with what a database refuses (NUL, unpaired surrogates) escaped."""
    return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


KNOWN_STATUSES = frozenset({"active", "paused", "completed", "draft", "archived"})


class InvalidRecord(ValueError):
    """The record cannot be stored; ``campaign_id`` is its id when that is usable
    (the campaign can still be synced on the platform)."""

    def __init__(self, reason: str, campaign_id: str | None = None):
        super().__init__(reason)
        self.campaign_id = campaign_id


# Fields a record may lack: stored as NULL and flagged missing_<field>.
OPTIONAL = ("name", "status", "budget", "impressions", "clicks", "conversions", "created_at")
MODELLED = frozenset(("id", *OPTIONAL))  # the record's fields the campaign declaration reads


def record_key(record: Any, text: str = "") -> str:
    """What makes two records the same campaign: the id as sent, else the content (its text, when given)."""
    cid = record.get("id") if isinstance(record, dict) else None
    if isinstance(cid, (str, int)) and not isinstance(cid, bool):
        return f"id:{cid}"
    text = text or json.dumps(record, sort_keys=True, default=str, ensure_ascii=True)
    return "sha1:" + hashlib.sha1(text.encode()).hexdigest()


def validate_campaign(record: Any, text: str = "") -> Campaign:
    """The storable campaign in ``record``, or :class:`InvalidRecord` saying why not.
    ``text``: the record as the platform sent it, kept as ``raw`` (else it is encoded again)."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"record is not a JSON object: {type(record).__name__}")
    cid = usable_id(record.get("id"), None)
    if cid is None:
        raise InvalidRecord(f"id {record.get('id')!r:.60}: not a usable id")
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
