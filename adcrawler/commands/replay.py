"""``scrapy replay FILE...``: load spool files into the database, under their runs (twice changes
nothing), then count each run again from its rows and close it; exit 0 when every file was replayed,
1 if a line could not be read back (quarantined, its run stays partial) or the database was not there."""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

from scrapy.commands import ScrapyCommand

from adcrawler.disk import UNREADABLE, read_spool
from adcrawler.ledger import after_replay
from adcrawler.model import RejectedRecord
from adcrawler.store import BatchResult, Store

from . import OperatorCommand

BATCH = 500


def replay(store: Store, paths: list[Path]) -> tuple[BatchResult, int, int]:
    """Load ``paths``; returns what the upserts did, how many rows the database refused and how
    many lines could not be read back."""
    total, refused, unreadable = BatchResult(), 0, 0
    store.migrate()
    for path in paths:
        by_run: dict[str, list] = defaultdict(list)
        for run_id, item in read_spool(path):
            by_run[run_id].append(item)
        for run_id, items in by_run.items():
            torn = Counter(item.client_id for item in items
                           if isinstance(item, RejectedRecord) and item.reason.startswith(UNREADABLE))
            unreadable += sum(torn.values())
            for start in range(0, len(items), BATCH):
                written = store.write(run_id, items[start:start + BATCH])
                for result in written.clients.values():
                    total += result
                for item, reason in written.refused:
                    refused += 1
                    print(f"replay: quarantined {getattr(item, 'campaign_id', None)!r} of client "
                          f"{item.client_id!r}: {reason}", file=sys.stderr)
            for client in sorted({item.client_id for item in items}):
                store.close_replayed(run_id, client, partial(after_replay, unreadable=torn[client]))
        path.rename(path.with_name(path.name + ".replayed"))
    return total, refused, unreadable


class Command(OperatorCommand, ScrapyCommand):
    def syntax(self) -> str:
        return "FILE [FILE...]"

    def short_desc(self) -> str:
        return "Load spool files (batches the database could not take) into the database"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        paths = [Path(a) for a in args]
        missing = [str(p) for p in paths if not p.is_file()]
        if not paths or missing:
            print(f"replay: no such file: {', '.join(missing)}" if missing else "replay: give spool files",
                  file=sys.stderr)
            self.exitcode = 2
            return
        done = self.with_store("replay", lambda store: replay(store, paths))
        if done is None:
            return
        total, refused, unreadable = done
        print(f"replayed: {total.inserted} inserted, {total.updated} updated, {total.unchanged} unchanged, "
              f"{total.rejected} quarantined records ({refused} refused by the database)")
        if unreadable:
            print(f"replay: {unreadable} spool line(s) could not be read back: kept in quarantine, and their runs "
                  "stay partial", file=sys.stderr)
            self.exitcode = 1
