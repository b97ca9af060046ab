"""Items the spider yields and the store pipeline writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from adcrawler.validation import Campaign, storable_text


@dataclass(frozen=True)
class CampaignItem:
    """One campaign of one client, with the outcome of this run's sync call."""

    client_id: str
    campaign_id: str
    name: str
    status: str
    budget: Decimal
    impressions: int
    clicks: int
    conversions: int
    created_at: datetime
    raw: str  # the record exactly as the platform sent it, as JSON
    quality_flags: tuple[str, ...]
    fetched_at: datetime
    sync_status: str  # "synced" or "failed"
    synced_at: datetime | None = None
    sync_error: str | None = None

    @classmethod
    def of(cls, client_id: str, campaign: Campaign, fetched_at: datetime, **sync: Any) -> "CampaignItem":
        return cls(client_id=client_id, fetched_at=fetched_at, **campaign.model_dump(), **sync)

    @property
    def flags_text(self) -> str | None:
        """The flags as stored in the database: comma-separated, or NULL."""
        return ",".join(self.quality_flags) or None


@dataclass(frozen=True)
class RejectedRecord:
    """A record that cannot be stored as a campaign, kept verbatim with the reason."""

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
