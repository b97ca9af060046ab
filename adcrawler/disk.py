"""What the crawler keeps on disk besides the database, all private to its user: the spool (batches the
database could not take, one file per run and client, replayed by upsert) and the job directory
(the run's id and state, and a journal of what is not committed yet, so a killed run resumes)."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from adcrawler.model import CampaignItem, RejectedRecord, columns

PRIVATE_UMASK = 0o077


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return it."""
    path = Path(path)
    if not path.exists():
        private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def open_private(path: str | Path, mode: str = "a") -> IO[str]:
    """Open a text file for writing (``a`` or ``w``), created with mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    private_dir(Path(path).parent)
    return os.fdopen(os.open(path, flags, 0o600), mode, encoding="utf-8")


def write_private(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers never see half a file), mode 0600."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open_private(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# -- the spool ------------------------------------------------------------------------

# JSON back to the value of each column type (the others are JSON already).
_DECODE = {"ts": datetime.fromisoformat, "money": Decimal, "flags": tuple}
_CAMPAIGN_TYPES = {name: column.type for name, column in columns(CampaignItem).items()}


def entries(run_id: str, items: list[Any]) -> str:
    return "".join(json.dumps({"run_id": run_id, "kind": "campaign" if isinstance(item, CampaignItem) else "rejected",
                               "item": item.model_dump(mode="json")}) + "\n" for item in items)


def append_spool(directory: Path, run_id: str, batch: list[Any]) -> list[Path]:
    """Append ``batch`` to its clients' spool files of ``run_id``; returns the files written."""
    paths = []
    for client in sorted({item.client_id for item in batch}):
        # One file per run and client ("+" is in neither): whatever happens to a line, the
        # file still says whose it was.
        path = Path(directory) / f"{run_id}+{client}.jsonl"
        with open_private(path, "a") as fh:
            fh.write(entries(run_id, [item for item in batch if item.client_id == client]))
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
    if entry["kind"] == "rejected":
        return str(entry["run_id"]), RejectedRecord.model_validate(data)
    decoded = {name: _DECODE[kind](data[name]) if data[name] is not None and kind in _DECODE else data[name]
               for name, kind in _CAMPAIGN_TYPES.items()}
    return str(entry["run_id"]), CampaignItem.model_construct(**decoded)


def _unreadable(path: Path, number: int, line: str, exc: Exception) -> tuple[str, RejectedRecord]:
    run_id, _, client = path.name.removesuffix(".jsonl").partition("+")  # as append_spool names it
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


# -- the job directory ------------------------------------------------------------------

RUN_FILE = "adcrawler-run.json"
JOURNAL_FILE = "adcrawler-journal.jsonl"


@dataclass
class JobState:
    run_id: str
    resumed: bool = False
    path: Path | None = None  # None: no job directory

    @classmethod
    def load(cls, jobdir: str | None) -> "JobState":
        """The run of ``jobdir``: the interrupted one, or a new one."""
        if not jobdir:
            return cls(uuid.uuid4().hex)
        path = Path(jobdir, RUN_FILE)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("state") == "running" and isinstance(data.get("run_id"), str):
            return cls(data["run_id"], resumed=True, path=path)
        return cls(uuid.uuid4().hex, path=path)  # written once the run holds a client

    def save(self, state: str) -> None:
        if self.path is not None:
            write_private(self.path, json.dumps({"run_id": self.run_id, "state": state}))

    def journal(self) -> "Journal | None":
        return Journal(self.path.parent / JOURNAL_FILE, self.run_id) if self.path else None


class JobDirInUse(Exception):
    """Another live process works in this job directory."""


_claimed: list[int] = []  # descriptors kept open, and so locked, until the process ends


def claim(jobdir: str) -> None:
    """Make ``jobdir`` this process's alone for as long as it lives (an OS lock
    on the directory itself, released by the kernel if the process dies), or
    raise :class:`JobDirInUse`. Creates the directory, writes nothing in it."""
    path = private_dir(Path(jobdir))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobDirInUse(f"JOBDIR {jobdir} is in use by another crawl that is still running; "
                          "give each crawl its own job directory") from None
    _claimed.append(fd)


@dataclass
class Journal:
    """Items not yet committed, on disk, one JSON line each."""

    path: Path
    run_id: str
    _fh: Any = field(default=None, init=False, repr=False)

    def pending(self) -> list[CampaignItem | RejectedRecord]:
        """What the journal holds; a line a kill cut short is left out: its item was never stored,
        so the resumed run lists and syncs its campaign again."""
        if not self.path.exists():
            return []
        return [item for _, item in read_spool(self.path)
                if not (isinstance(item, RejectedRecord) and item.reason.startswith(UNREADABLE))]

    def append(self, item: Any) -> None:
        if self._fh is None:
            self._fh = open_private(self.path, "a")
        self._fh.write(entries(self.run_id, [item]))
        self._fh.flush()  # in the OS's hands: survives a killed process

    def rewrite(self, items: list[Any]) -> None:
        """Keep only ``items`` (those still waiting for a commit)."""
        self.close()
        write_private(self.path, entries(self.run_id, items))

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
