"""The spool: batches kept on disk while the database is down, and their replay.

One JSON object per line: ``{"run_id", "kind", "item"}``. Replaying is
idempotent (upserts), so a spool can be replayed twice without harm.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, TextIO

from adcrawler.items import CampaignItem, RejectedRecord

KINDS = {"campaign": CampaignItem, "rejected": RejectedRecord}
_DATES = {"created_at", "fetched_at", "synced_at", "seen_at"}


def write_entries(fh: TextIO, run_id: str, items: list[Any]) -> None:
    for item in items:
        kind = "campaign" if isinstance(item, CampaignItem) else "rejected"
        fh.write(json.dumps({"run_id": run_id, "kind": kind, "item": asdict(item)}, default=str) + "\n")


def append_spool(directory: Path, run_id: str, batch: list[Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run_id}.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        write_entries(fh, run_id, batch)
    return path


def read_spool(path: Path) -> Iterator[tuple[str, CampaignItem | RejectedRecord]]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        cls = KINDS[entry["kind"]]
        data = entry["item"]
        for f in fields(cls):
            value = data.get(f.name)
            if f.name in _DATES and value is not None:
                data[f.name] = datetime.fromisoformat(value)
            elif f.name == "budget":
                data[f.name] = Decimal(value)
        yield entry["run_id"], cls(**data)
