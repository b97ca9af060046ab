"""Replay spool files into the database: ``python -m adcrawler.replay FILE [FILE...]``.

A spool file holds the batches a run could not write while the database was
down (see the store pipeline). Replaying upserts them with their original run
id; it is idempotent, so a file replayed twice changes nothing the second time.
A file fully replayed is renamed ``*.replayed``. The database is the one the
crawler uses (``DATABASE_URL``, else the SQLite file). Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

from scrapy.utils.project import get_project_settings

from adcrawler.spool import read_spool
from adcrawler.store import BatchResult, StoreError, first_line, open_store

BATCH = 500


def replay(paths: list[Path], database_url: str, sqlite_path: str) -> BatchResult:
    store = open_store(database_url, sqlite_path)
    total = BatchResult()
    try:
        store.migrate()
        for path in paths:
            by_run: dict[str, list] = defaultdict(list)
            for run_id, item in read_spool(path):
                by_run[run_id].append(item)
            for run_id, items in by_run.items():
                for start in range(0, len(items), BATCH):
                    for result in store.write_batch(run_id, items[start:start + BATCH]).values():
                        total += result
            path.rename(path.with_name(path.name + ".replayed"))
    finally:
        store.close()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adcrawler.replay", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="spool files (*.jsonl) to replay")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_project_settings()
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        total = replay(args.files, settings.get("DATABASE_URL"), settings.get("ADCRAWLER_SQLITE_PATH"))
    except StoreError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database is still down, a file is corrupt...
        print(f"replay: failed, nothing renamed after the failing file: {type(exc).__name__}: "
              f"{first_line(exc)}", file=sys.stderr)
        return 1
    print(f"replayed: {total.inserted} inserted, {total.updated} updated, {total.unchanged} unchanged, "
          f"{total.rejected} quarantined records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
