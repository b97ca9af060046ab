"""Campaign upserts per second: the store's batches against row by row.

    python -m bench.upserts [--rows 100000] [--postgres DSN]

Writes ``--rows`` campaigns through ``Store.write_batch`` in batches (the
crawler's default size, 50, and 500), then the inherited pattern row by row:
one connection per row (the inherited script opened a pool per row) and, more
generously, one transaction per row on a single connection, both with the same
parameterized upsert. Row by row is measured on a tenth of the rows (and on
at most 2,000 with a connection per row): what matters is the rate. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from adcrawler.model import CampaignItem
from adcrawler.store import open_store
from adcrawler.store.writes import CAMPAIGN_COLUMNS, UPSERT, campaign_row
from harness.pg import throwaway_database

NOW = datetime.now(timezone.utc)


def items(n: int, offset: int = 0) -> list[CampaignItem]:
    return [CampaignItem(client_id="bench", campaign_id=f"campaign_{i}", name=f"Campaign {i}", status="active",
                         budget=Decimal("1234.50"), impressions=1000 + i, clicks=i % 500, conversions=i % 50,
                         created_at=NOW, raw=json.dumps({"id": f"campaign_{i}"}), quality_flags=(), fetched_at=NOW,
                         sync_status="synced", synced_at=NOW) for i in range(offset, offset + n)]


def _row(item: CampaignItem) -> tuple:
    row = campaign_row(item, NOW)
    return tuple(row[c] for c in CAMPAIGN_COLUMNS)


def timed(work: Callable[[], Any], rows: int) -> float:
    began = time.perf_counter()
    work()
    return rows / (time.perf_counter() - began)


def bench(url: str, sqlite_path: str, rows: int) -> dict[str, float]:
    store = open_store(url or f"sqlite:///{sqlite_path}")
    store.migrate()
    out: dict[str, float] = {}
    for size in (50, 500):
        batch = items(rows, offset=size * 10**6)
        out[f"batched_{size}"] = timed(
            lambda b=batch, s=size: [store.write_batch("bench", b[i:i + s]) for i in range(0, len(b), s)], rows)
    store.close()

    def connect() -> Any:
        if url:
            import psycopg2

            return psycopg2.connect(url)
        return sqlite3.connect(sqlite_path, timeout=30)

    sql = UPSERT.replace(" RETURNING client_id, campaign_id", "")
    sql = sql.format(values="(" + ", ".join(["%s" if url else "?"] * 16) + ")")

    def convert(row: tuple) -> tuple:
        return row if url else tuple(str(v) if isinstance(v, (Decimal, datetime)) else v for v in row)

    def one_connection(batch: list[CampaignItem]) -> None:
        conn = connect()
        for item in batch:
            cur = conn.cursor()
            cur.execute(sql, convert(_row(item)))
            conn.commit()
        conn.close()

    def connection_per_row(batch: list[CampaignItem]) -> None:
        for item in batch:
            conn = connect()
            conn.cursor().execute(sql, convert(_row(item)))
            conn.commit()
            conn.close()

    small = max(1000, rows // 10)
    out["row_by_row"] = timed(lambda: one_connection(items(small, offset=7 * 10**6)), small)
    tiny = min(small, 2000)
    out["connection_per_row"] = timed(lambda: connection_per_row(items(tiny, offset=8 * 10**6)), tiny)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upserts")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        result["sqlite"] = bench("", str(Path(tmp) / "bench.sqlite3"), args.rows)
    with throwaway_database("adcrawler_bench", args.postgres) as url:
        result["postgresql"] = bench(url, "", args.rows)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
