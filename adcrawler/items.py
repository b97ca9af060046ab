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
counts and budgets sent as numeric strings or integral floats are converted
without loss, booleans are not numbers, ids are letters, digits and a few
separators (they go into a URL path and a primary key).
"""

from __future__ import annotations

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


def usable_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not USABLE_ID.match(value):
        raise ValueError("not a usable id (letters, digits, '_', '.', ':', '-'; at most 128)")
    return value


Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=-INT64 - 1, le=INT64)]
Text = Annotated[str, Field(min_length=1)]


class Campaign(BaseModel):
    """A campaign as the platform sent it, validated: typed fields, the raw record, the flags."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, str_strip_whitespace=False)

    campaign_id: Annotated[str, BeforeValidator(usable_id), Column("text", key=2)] = Field(alias="id")
    name: Annotated[Text, Column("text")]
    status: Annotated[Text, Column("text", history="status")]
    budget: Annotated[Decimal, BeforeValidator(_budget), Column("money", history="budget")]
    impressions: Annotated[Count, Column("bigint", history="impressions")]
    clicks: Annotated[Count, Column("bigint", history="clicks")]
    conversions: Annotated[Count, Column("bigint", history="conversions")]
    created_at: Annotated[datetime, Column("ts")]
    # The record exactly as the platform sent it, as JSON (JSON text of the
    # same record may differ in form, so it is not compared).
    raw: Annotated[str, Column("json", compared=False)] = ""
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
    def of(cls, client_id: str, record: Any, reason: str, seen_at: datetime) -> "RejectedRecord":
        cid = record.get("id") if isinstance(record, dict) else None
        campaign_id = str(cid)[:200] if isinstance(cid, (str, int)) and not isinstance(cid, bool) else None
        return cls(client_id=client_id, campaign_id=campaign_id and storable_text(campaign_id),
                   reason=storable_text(reason)[:1000], seen_at=seen_at,
                   payload=json.dumps(record, ensure_ascii=True, default=str))


def storable_text(text: str) -> str:
    """``text`` with what a database refuses (NUL, unpaired surrogates) escaped."""
    return UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
