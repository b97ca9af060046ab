"""Items the spider yields and the pipeline stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adcrawler.validation import Campaign


@dataclass(frozen=True)
class CampaignItem(Campaign):
    """One validated campaign of one client, with the outcome of this run's sync call."""

    client_id: str
    fetched_at: datetime
    sync_status: str  # "synced" or "failed"
    synced_at: datetime | None = None
    sync_error: str | None = None


@dataclass
class RejectedRecord:
    """A payload that failed validation: kept verbatim with the reason."""

    client_id: str
    reason: str
    payload: str  # the raw JSON text of the record
    seen_at: datetime
