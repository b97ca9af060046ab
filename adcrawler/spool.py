"""The spool: batches kept on disk while the database is unreachable, and reading them back.

One JSON object per line: ``{"run_id", "kind", "item"}``. Replaying is
idempotent (upserts), so a spool can be replayed twice without harm. A line
that cannot be read back (cut short by a full disk, edited by hand) becomes a
quarantine record with the line itself as payload, so that replay stores the
rest and loses nothing. The job directory's journal uses the same format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, TextIO

from adcrawler.files import open_private
from adcrawler.items import CampaignItem, RejectedRecord

KINDS = {"campaign": CampaignItem, "rejected": RejectedRecord}
_DATES = {"created_at", "fetched_at", "synced_at", "seen_at"}


def write_entries(fh: TextIO, run_id: str, items: list[Any]) -> None:
    for item in items:
        kind = "campaign" if isinstance(item, CampaignItem) else "rejected"
        fh.write(json.dumps({"run_id": run_id, "kind": kind, "item": asdict(item)}, default=str) + "\n")


def append_spool(directory: Path, run_id: str, batch: list[Any]) -> Path:
    path = Path(directory) / f"{run_id}.jsonl"
    with open_private(path, "a") as fh:
        write_entries(fh, run_id, batch)
    return path


def read_spool(path: Path) -> Iterator[tuple[str, CampaignItem | RejectedRecord]]:
    """(run id, item) for each line; an unreadable line comes back as a quarantine record."""
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield _entry(line)
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                yield _unreadable(path, number, line, exc)


def _entry(line: str) -> tuple[str, CampaignItem | RejectedRecord]:
    entry = json.loads(line)
    cls = KINDS[entry["kind"]]
    data = dict(entry["item"])
    for f in fields(cls):
        raw = data.get(f.name)
        if f.name in _DATES and raw is not None:
            data[f.name] = datetime.fromisoformat(raw)
        elif f.name == "budget":
            data[f.name] = Decimal(raw)
        elif f.name == "quality_flags":
            data[f.name] = tuple(raw or ())
    return str(entry["run_id"]), cls(**data)


def _unreadable(path: Path, number: int, line: str, exc: Exception) -> tuple[str, RejectedRecord]:
    try:
        partial = json.loads(line)
    except ValueError:
        partial = {}
    partial = partial if isinstance(partial, dict) else {}
    item = partial.get("item") if isinstance(partial.get("item"), dict) else {}
    record = {"spool_file": path.name, "line": number, "text": line.rstrip("\n")}
    rejected = RejectedRecord.of(str(item.get("client_id") or "unknown"), record,
                                 f"spool line {number} unreadable: {type(exc).__name__}: {exc}"[:500],
                                 datetime.now(timezone.utc))
    return str(partial.get("run_id") or path.stem), rejected
