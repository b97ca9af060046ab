"""The spool: batches kept on disk while the database is unreachable, and reading them back.

One file per run and client (``<run id>+<client id>.jsonl``), one JSON object per
line: ``{"run_id", "kind", "item"}``, the item as its
declaration in :mod:`adcrawler.items` dumps it. A campaign is read back by the
declared column type of each field and not validated again: a spool keeps
what it was given, even a value a database then refuses. Replaying is
idempotent (upserts), so a spool can be replayed twice without harm. A line
that cannot be read back (cut short by a full disk, edited by hand) becomes a
quarantine record of the file's run and client with the line itself as payload,
so that replay stores the rest and loses nothing, and the run stays partial. The job directory's journal uses the same format.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, TextIO

from pydantic import ValidationError

from adcrawler.files import open_private
from adcrawler.items import CampaignItem, RejectedRecord, columns

KINDS = {"campaign": CampaignItem, "rejected": RejectedRecord}
# JSON back to the value of each column type (the others are JSON already).
_DECODE = {"ts": datetime.fromisoformat, "money": Decimal, "flags": tuple}
_CAMPAIGN_TYPES = {name: column.type for name, column in columns(CampaignItem).items()}


def write_entries(fh: TextIO, run_id: str, items: list[Any]) -> None:
    for item in items:
        kind = "campaign" if isinstance(item, CampaignItem) else "rejected"
        fh.write(json.dumps({"run_id": run_id, "kind": kind, "item": item.model_dump(mode="json")}) + "\n")


def spool_path(directory: Path, run_id: str, client: str) -> Path:
    # One file per run and client ("+" is in neither): whatever happens to a line, the
    # file still says whose it was.
    return Path(directory) / f"{run_id}+{client}.jsonl"


def owner(path: Path) -> tuple[str, str | None]:
    """(run id, client) a spool file belongs to; client None for a file that does not say."""
    run_id, _, client = path.name.removesuffix(".jsonl").partition("+")
    return run_id, client or None


def append_spool(directory: Path, run_id: str, batch: list[Any]) -> list[Path]:
    """Append ``batch`` to its clients' spool files of ``run_id``; returns the files written."""
    paths = []
    for client in sorted({item.client_id for item in batch}):
        path = spool_path(directory, run_id, client)
        with open_private(path, "a") as fh:
            write_entries(fh, run_id, [item for item in batch if item.client_id == client])
        paths.append(path)
    return paths


UNREADABLE = "unreadable"  # how the reason of a line that could not be read back begins


def read_spool(path: Path) -> Iterator[tuple[str, CampaignItem | RejectedRecord]]:
    """(run id, item) for each line; an unreadable line comes back as a quarantine record of the
    file's run and client, its reason starting with :data:`UNREADABLE`."""
    with path.open(encoding="utf-8", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield _entry(line)
            except (ValueError, KeyError, TypeError, ArithmeticError, ValidationError) as exc:
                yield _unreadable(path, number, line, exc)


def _entry(line: str) -> tuple[str, CampaignItem | RejectedRecord]:
    entry = json.loads(line)
    data = entry["item"]
    if entry["kind"] != "campaign":
        return str(entry["run_id"]), KINDS[entry["kind"]].model_validate(data)
    decoded = {}
    for name, kind in _CAMPAIGN_TYPES.items():
        value = data[name]
        decoded[name] = _DECODE[kind](value) if value is not None and kind in _DECODE else value
    return str(entry["run_id"]), CampaignItem.model_construct(**decoded)


def _unreadable(path: Path, number: int, line: str, exc: Exception) -> tuple[str, RejectedRecord]:
    run_id, client = owner(path)
    try:
        partial = json.loads(line)
    except ValueError:
        partial = {}
    partial = partial if isinstance(partial, dict) else {}
    item = partial.get("item") if isinstance(partial.get("item"), dict) else {}
    record = {"spool_file": path.name, "line": number, "text": line.rstrip("\n")}
    rejected = RejectedRecord.of(str(client or item.get("client_id") or "unknown"), record,
                                 f"{UNREADABLE}: spool line {number}: {type(exc).__name__}: {exc}"[:500],
                                 datetime.now(timezone.utc))
    return str(partial.get("run_id") or run_id), rejected
