"""The job directory (Scrapy's ``JOBDIR``): which run this is, and what is not committed yet.

It holds only two files of ours, both JSON:

- ``adcrawler-run.json``: ``{"run_id", "state"}``, ``state`` being ``running``
  until the run ends. A job directory whose run ended starts a new run; only
  one whose run was interrupted (killed, or stopped with SIGTERM) resumes it,
  with the same run id. Written only once the run holds a client: a process
  that holds none (another run has them all) leaves the directory alone;
- ``adcrawler-journal.jsonl``: every item the moment it reaches the pipeline,
  until its batch is committed. A run killed with items still buffered stores
  them when it resumes.

A resumed run lists the campaigns again and skips those already stored as
synced for this run. Nothing of Scrapy's is kept here (no request queue, no
seen-requests file, no pickled spider state): the queue would send again
requests whose answers were stored, and the seen-requests file would drop the
requests that were in flight at the kill. What a kill can cost is bounded by
the requests in flight at that moment, at most ``ADCRAWLER_RATE_LIMIT`` per
client: their sync may reach the platform again on resume.

One live process per job directory: the crawl command :func:`claim`s it
before anything starts, and a second start on it is refused with one line.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adcrawler.files import open_private, private_dir, write_private
from adcrawler.items import CampaignItem, RejectedRecord
from adcrawler.spool import read_spool, write_entries

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
            private_dir(self.path.parent)
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


class Journal:
    """Items not yet committed, on disk, one JSON line each."""

    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        self._fh: Any = None

    def pending(self) -> list[CampaignItem | RejectedRecord]:
        if not self.path.exists():
            return []
        return [item for _, item in read_spool(self.path)]

    def append(self, item: Any) -> None:
        if self._fh is None:
            self._fh = open_private(self.path, "a")
        write_entries(self._fh, self.run_id, [item])
        self._fh.flush()  # in the OS's hands: survives a killed process

    def rewrite(self, items: list[Any]) -> None:
        """Keep only ``items`` (those still waiting for a commit)."""
        self.close()
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp, "w") as fh:
            write_entries(fh, self.run_id, items)
        tmp.replace(self.path)

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
