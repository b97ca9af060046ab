"""Resuming an interrupted run from its job directory (Scrapy's ``JOBDIR``).

What a resumed run must know is what the interrupted one *stored*, so the job
directory holds our own state, not Scrapy's request queue:

- ``adcrawler-run-id``: the run id, so the resumed run writes the same run;
- ``adcrawler-journal.jsonl``: every item the moment it reaches the pipeline,
  until its batch is committed. A run killed with items still buffered
  replays them into the database when it starts again.

On start the spider lists the campaigns again and skips those already stored as
synced for this run. Scrapy's disk queue and persistent duplicate filter are
turned off here: the queue would send again requests whose answers we already
stored, and the filter would forget the requests that were in flight at the
kill. What a kill can cost is bounded by the requests in flight at that moment,
at most ``ADCRAWLER_RATE_LIMIT`` per client: their sync may reach the platform
and be sent again on resume.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from scrapy.core.scheduler import Scheduler
from scrapy.dupefilters import RFPDupeFilter

from adcrawler.items import CampaignItem, RejectedRecord
from adcrawler.spool import read_spool, write_entries

RUN_ID_FILE = "adcrawler-run-id"
JOURNAL_FILE = "adcrawler-journal.jsonl"


def run_id_for(jobdir: str | None) -> str:
    """The run id stored in ``jobdir``, created on the first start."""
    if not jobdir:
        return uuid.uuid4().hex
    path = Path(jobdir, RUN_ID_FILE)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    path.write_text(run_id)
    return run_id


class Journal:
    """Items not yet committed, on disk, one JSON line each."""

    def __init__(self, jobdir: str, run_id: str):
        self.path = Path(jobdir, JOURNAL_FILE)
        self.run_id = run_id
        self._fh = None

    def pending(self) -> list[CampaignItem | RejectedRecord]:
        if not self.path.exists():
            return []
        return [item for _, item in read_spool(self.path)]

    def append(self, item: Any) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        write_entries(self._fh, self.run_id, [item])
        self._fh.flush()  # in the OS's hands: survives a killed process

    def rewrite(self, items: list[Any]) -> None:
        """Keep only ``items`` (those still waiting for a commit)."""
        self.close()
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            write_entries(fh, self.run_id, items)
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ResumeScheduler(Scheduler):
    """Scrapy's scheduler, never persisting requests to the job directory."""

    def _dqdir(self, jobdir: str | None) -> None:
        return None


class ResumeDupeFilter(RFPDupeFilter):
    """The default duplicate filter, kept in memory even when JOBDIR is set."""

    @classmethod
    def from_crawler(cls, crawler: Any) -> "ResumeDupeFilter":
        return cls(None, debug=crawler.settings.getbool("DUPEFILTER_DEBUG"),
                   fingerprinter=crawler.request_fingerprinter)
