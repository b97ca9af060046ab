"""A campaign's fields, declared once, and the items the spider yields.

Each field of :class:`Campaign` (what the platform sends, validated) and of
:class:`CampaignItem` (the campaign with its client and this run's sync) is
declared here, once, with a :class:`Column` saying how it is stored. Everything
else derives from these declarations: validation (pydantic), the SQL of both
backends and PostgreSQL's COPY types (:mod:`adcrawler.store.base`), the
history row, and the spool and journal codec (:mod:`adcrawler.spool`). A new
field is one line here plus a migration (:mod:`adcrawler.store.schema`); a
test checks that the migrated tables have exactly the declared columns.

Value rules (see :mod:`adcrawler.validation` for the record as a whole):
every field but the id may be absent or ``null`` (stored as NULL: unknown,
never 0); counts and budgets sent as numeric strings or integral numbers are
converted without loss, a budget with more than two decimals is rounded to the
cent (validation flags it), booleans are not numbers, ids are letters, digits
and a few separators (they go into a URL path and a primary key).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

USABLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
INT64 = 2**63 - 1
MAX_BUDGET = Decimal(10) ** 14  # NUMERIC(16, 2)
CENT = Decimal("0.01")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Column:
    """How a field is stored in ``campaigns`` (and ``campaign_metrics``).

    ``type`` names a column type of :data:`adcrawler.store.schema.TYPES` or
    ``flags`` (a JSON array of flag names, NULL when there is none); ``key`` is the field's place in the
    primary key (0: not part of it);
    a change in a ``compared`` field rewrites the row; ``history`` names the
    field's column in the history row (``campaign_metrics``), if it has one.
    """

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


def usable_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USABLE_ID.match(value):
        raise ValueError("not a usable id (letters, digits, '_', '.', ':', '-'; at most 128)")
    return value


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
    found = {}
    for name, info in model.model_fields.items():
        column = next((m for m in info.metadata if isinstance(m, Column)), None)
        if column is not None:
            found[name] = column
    return found


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
