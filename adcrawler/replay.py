"""Replay spool files into the database: ``python -m adcrawler.replay FILE [FILE...]``.

A spool file holds the batches a run could not write while the database was
unreachable (see the store pipeline). Replaying upserts them with their original
run id; it is idempotent, so a file replayed twice changes nothing the second
time. A row the database refuses, or a line that cannot be read back, is
quarantined with the reason and the rest loads. A file fully replayed is renamed
``*.replayed``. The database is the one the crawler uses (``DATABASE_URL``, else
the SQLite file). The run's record then counts the run from its rows, and
closes it when no run holds the client: the spool no longer makes it partial
(unless a line of it could not be read back), and a run that never recorded its end is
``interrupted``. Exit status 0 when every file was replayed, 1 if a line could not be
read back or the database could not be used (nothing is renamed after the failing
file), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

from scrapy.utils.project import get_project_settings

from adcrawler.config import ConfigError, value
from adcrawler.files import PRIVATE_UMASK
from adcrawler.outcome import after_replay
from adcrawler.items import RejectedRecord
from adcrawler.spool import UNREADABLE, read_spool
from adcrawler.store import BatchResult, StoreError, first_line, open_store

BATCH = 500


def replay(paths: list[Path], database_url: str, sqlite_path: str) -> tuple[BatchResult, int, int]:
    """Load ``paths``; returns what the upserts did, how many rows the database refused and how
    many lines could not be read back."""
    store = open_store(database_url, sqlite_path)
    total, refused, unreadable = BatchResult(), 0, 0
    try:
        store.migrate()
        for path in paths:
            by_run: dict[str, list] = defaultdict(list)
            for run_id, item in read_spool(path):
                by_run[run_id].append(item)
            for run_id, items in by_run.items():
                clients = sorted({item.client_id for item in items})
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
                for client in clients:
                    store.close_replayed(run_id, client, partial(after_replay, unreadable=torn[client]))
            path.rename(path.with_name(path.name + ".replayed"))
    finally:
        store.close()
    return total, refused, unreadable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adcrawler.replay", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="spool files (*.jsonl) to replay")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.umask(PRIVATE_UMASK)
    settings = get_project_settings()
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        database_url, sqlite_path = value(settings, "DATABASE_URL"), value(settings, "ADCRAWLER_SQLITE_PATH")
    except ConfigError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    try:
        total, refused, unreadable = replay(args.files, database_url, sqlite_path)
    except StoreError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the database is still down, a file is corrupt...
        print(f"replay: failed, nothing renamed after the failing file: {type(exc).__name__}: "
              f"{first_line(exc)}", file=sys.stderr)
        return 1
    print(f"replayed: {total.inserted} inserted, {total.updated} updated, {total.unchanged} unchanged, "
          f"{total.rejected} quarantined records ({refused} refused by the database)")
    if unreadable:
        print(f"replay: {unreadable} spool line(s) could not be read back: kept in quarantine, and their runs "
              "stay partial", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
