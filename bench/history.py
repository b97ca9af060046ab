"""A run's database time beside 10 M history rows, and pruning them (PostgreSQL).

    python -m bench.history [--clients 1000] [--campaigns 100] [--runs 100] [--reps 9] [--prune-clients 0]

Two throwaway databases hold the same current state (``clients`` x ``campaigns``
rows in ``campaigns``, raw records of about 200 bytes); one of them also holds
the history: ``clients`` x ``campaigns`` x ``runs`` rows in ``campaign_metrics``
and ``clients`` x ``runs`` in ``sync_runs``, over a year (one INSERT ... SELECT
FROM generate_series each, the history's indexes built after it, then ANALYZE).

- A run's database time: the store calls a crawl makes for one client's run of
  ``campaigns`` campaigns (the recorder's lock, run record and last-success reads,
  the pipeline's ``write`` in batches of 50, the listing's removals and fields, the
  run's record, the lease released), for ``RUN_CLIENTS`` clients in turn, without
  and with the history, back to back, ``reps`` times: each pair's ratio.
- Pruning: ``prune(client, now - KEEP_DAYS)`` for every client (or the first
  ``--prune-clients``), one after the other on one connection, while a thread runs
  other clients' runs through the same calls on its own connection, each call timed.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from adcrawler.model import CampaignItem
from adcrawler.pipelines import BATCH_SIZE
from adcrawler.store import RunOrigin, open_store
from harness.pg import throwaway_database

RUN_CLIENTS = 20  # clients' runs per repetition
KEEP_DAYS = 30
FIELDS = ("id", "name", "status", "budget", "impressions", "clicks", "conversions", "created_at", "currency",
          "objective")
STATS = {f"adcrawler/client/{{client}}/{name}": 1 for name in (
    "requests_sent", "responses_200", "campaigns_listed", "campaigns_synced", "campaigns_stored", "rows_updated",
    "sync_calls", "list_calls", "elapsed_seconds", "last_latency_seconds", "rate_limit_effective")}
CLIENT = "'client' || lpad(c::text, 4, '0')"
SERIES = ("FROM (SELECT %(runs)s - 1 - n / (%(clients)s * %(campaigns)s) AS r, n / %(campaigns)s %% %(clients)s + 1 "
          "AS c, n %% %(campaigns)s + 1 AS k FROM generate_series(0, %(runs)s * %(clients)s * %(campaigns)s - 1) n) g")
AGE = "interval '1 day' * %(days)s * (r + c::float8 / %(clients)s) / %(runs)s"
RAW = ("jsonb_build_object('id', 'campaign_' || k, 'name', 'Campaign ' || k || ' of ' || {client}, 'status', "
       "'active', 'budget', '1234.50', 'impressions', {impressions}, 'clicks', k, 'conversions', k %% 50, "
       "'created_at', '2025-01-01T00:00:00Z', 'currency', 'EUR', 'objective', 'conversions')")
CAMPAIGNS = ("INSERT INTO campaigns (client_id, campaign_id, name, status, budget, impressions, clicks, conversions, "
             f"created_at, sync_status, synced_at, fetched_at, updated_at, raw) SELECT {CLIENT}, 'campaign_' || k, "
             "'Campaign ' || k, 'active', 1234.50, 1000 * k, k, k %% 50, '2025-01-01', 'synced', now(), now(), now(), "
             + RAW.format(client=CLIENT, impressions="1000 * k")
             + " FROM generate_series(1, %(clients)s) c, generate_series(1, %(campaigns)s) k")
METRICS = ("INSERT INTO campaign_metrics (run_id, client_id, campaign_id, captured_at, status, budget, impressions, "
           f"clicks, conversions, sync_status, row_change) SELECT md5(c || '/' || r), {CLIENT}, 'campaign_' || k, "
           f"now() - {AGE}, 'active', 1234.50, 1000 * k - r, k, k %% 50, 'synced', 'updated' {SERIES}")
RUNS = ("INSERT INTO sync_runs (run_id, client_id, started_at, finished_at, outcome, finish_reason, campaigns_seen, "
        "campaigns_synced, rows_updated, token_refreshes, rate_limit, rate_window, stats, node, pid) "
        f"SELECT md5(c || '/' || r), {CLIENT}, now() - {AGE} - interval '10 minutes', now() - {AGE}, 'succeeded', "
        "'finished', %(campaigns)s, %(campaigns)s, %(campaigns)s, 1, 10, 60, replace(%(stats)s, '{client}', "
        f"{CLIENT})::jsonb, 'node1', 4242 FROM generate_series(0, %(runs)s - 1) r, generate_series(1, %(clients)s) c")


def client_name(n: int) -> str:
    return f"client{n:04d}"


def execute(url: str, sqls: list[tuple[str, dict[str, Any]]], fetch: bool = False) -> list[Any]:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            out = []
            for sql, params in sqls:
                cur.execute(sql, params)
                out.append(cur.fetchone()[0] if fetch else None)
            return out
    finally:
        conn.close()


def populate(url: str, shape: dict[str, Any], history: bool) -> float:
    """The current state, and the history when asked; returns the seconds the history took."""
    store = open_store(url)
    store.migrate()
    store.close()
    execute(url, [(CAMPAIGNS, shape)])
    if not history:
        return 0.0
    began = time.perf_counter()
    # The history's indexes are built after its rows (the same definitions, from the catalog).
    indexes = execute(url, [("SELECT json_agg(json_build_array(pg_get_indexdef(i.indexrelid), c.conname)) FROM "
                             "pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid WHERE i.indrelid = "
                             "'campaign_metrics'::regclass", {})], fetch=True)[0]
    pkey = next(name for _, name in indexes if name)
    execute(url, [(f"ALTER TABLE campaign_metrics DROP CONSTRAINT {pkey}", {}),
                  *((f"DROP INDEX {d.split()[2]}", {}) for d, name in indexes if not name),
                  (METRICS, shape), (RUNS, shape), ("SET maintenance_work_mem = '1GB'", {}),
                  *((d, {}) for d, _ in indexes),
                  (f"ALTER TABLE campaign_metrics ADD CONSTRAINT {pkey} PRIMARY KEY USING INDEX {pkey}", {}),
                  ("ANALYZE", {})])
    return time.perf_counter() - began


def sizes(url: str) -> dict[str, float]:
    names = ("campaign_metrics", "campaign_metrics_heap", "campaign_metrics_indexes", "sync_runs", "campaigns")
    sqls = ["pg_total_relation_size('campaign_metrics')", "pg_relation_size('campaign_metrics')",
            "pg_indexes_size('campaign_metrics')", "pg_total_relation_size('sync_runs')",
            "pg_total_relation_size('campaigns')"]
    return dict(zip(names, (v / 2**20 for v in execute(url, [(f"SELECT {s}", {}) for s in sqls], fetch=True))))


def items(client: str, campaigns: int, seq: int) -> list[CampaignItem]:
    now = datetime.now(timezone.utc)
    out = []
    for k in range(1, campaigns + 1):
        impressions = 1000 * k + seq  # every run sees new figures: each row is updated
        raw = dict(zip(FIELDS, (f"campaign_{k}", f"Campaign {k} of {client}", "active", "1234.50", impressions, k,
                                k % 50, "2025-01-01T00:00:00Z", "EUR", "conversions")))
        out.append(CampaignItem(client_id=client, campaign_id=f"campaign_{k}", name=f"Campaign {k}", status="active",
                                budget=Decimal("1234.50"), impressions=impressions, clicks=k, conversions=k % 50,
                                created_at=datetime(2025, 1, 1, tzinfo=timezone.utc), raw=json.dumps(raw),
                                quality_flags=(), fetched_at=now, sync_status="synced", synced_at=now))
    return out


def one_run(url: str, client: str, campaigns: int, seq: int, timed: Callable[[str, float], None]) -> None:
    """One client's run: the store calls of the recorder and the pipeline, in their order, each timed."""
    store = open_store(url)  # the crawl's one connection, opened (and its schema read) once: not timed
    store.migrate()

    def call(name: str, function: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        out = function(*args)
        timed(name, time.perf_counter() - began)
        return out

    run_id, started = uuid.uuid4().hex, datetime.now(timezone.utc)
    store.lease_as(run_id, "bench", 60.0)
    if not call("try_lock", store.try_lock, client):
        raise SystemExit(f"{client} is held")
    call("last_success", store.last_success, client)  # a scheduled job: synced since?
    call("start_run", store.start_run, run_id, client, started, RunOrigin(node="bench", pid=1))
    call("last_success", store.last_success, client)
    call("known_problems", store.known_problems, client, run_id)
    batch = items(client, campaigns, seq)
    for i in range(0, len(batch), BATCH_SIZE):
        call("write", store.write, run_id, batch[i:i + BATCH_SIZE])
    call("locks_lost", store.locks_lost)
    call("mark_removed", store.mark_removed, client, {i.campaign_id for i in batch}, True, 0.5)
    call("swap_fields", store.swap_fields, client, set(FIELDS), set(FIELDS))
    call("record_run", store.record_run, {
        "run_id": run_id, "client_id": client, "started_at": started, "finished_at": datetime.now(timezone.utc),
        "outcome": "succeeded", "finish_reason": "finished", "campaigns_seen": campaigns, "retries": 0,
        "responses_429": 0, "token_refreshes": 1, "rate_limit": 10, "rate_window": 60.0,
        "stats": {name.format(client=client): v for name, v in STATS.items()}})
    call("close", store.close)


def run_times(empty: str, full: str, shape: dict[str, Any], reps: int) -> dict[str, Any]:
    """Each repetition: ``RUN_CLIENTS`` clients' runs, each client's run without the history and with it back to
    back (which goes first alternates), the same clients in both."""
    calls: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
    for rep in range(-1, reps):  # -1: a warm-up, not counted
        spent: dict[str, dict[str, float]] = {"empty": {}, "full": {}}
        for n in range(RUN_CLIENTS):
            client = client_name(shape["clients"] - RUN_CLIENTS * (rep + 1) - n)
            for label in ("empty", "full") if (rep + n) % 2 else ("full", "empty"):
                def timed(name: str, seconds: float, into: dict[str, float] = spent[label]) -> None:
                    into[name] = into.get(name, 0.0) + seconds

                one_run(empty if label == "empty" else full, client, shape["campaigns"], 100 * rep + n, timed)
        if rep >= 0:
            for label in calls:
                calls[label].append(spent[label])
    totals = {label: [sum(c.values()) for c in runs] for label, runs in calls.items()}
    pairs = [f / e for e, f in zip(totals["empty"], totals["full"])]
    return {"clients_per_rep": RUN_CLIENTS, "reps": reps, "ratios": pairs, "median_ratio": statistics.median(pairs),
            "median_empty_s": statistics.median(totals["empty"]), "median_full_s": statistics.median(totals["full"]),
            "calls": {name: statistics.median(c[name] for c in calls["full"])
                      / statistics.median(c[name] for c in calls["empty"]) for name in calls["full"][0]},
            "calls_share": {name: statistics.median(c[name] / sum(c.values()) for c in calls["full"])
                            for name in calls["full"][0]}}


def prune_under_load(url: str, shape: dict[str, Any], prune_clients: int) -> dict[str, Any]:
    """Prune the clients' history older than KEEP_DAYS while a thread runs other clients' runs."""
    waits: list[tuple[float, str, float]] = []  # (when it began, call, seconds)
    stop = threading.Event()

    def timed(name: str, seconds: float) -> None:
        waits.append((time.perf_counter() - seconds, name, seconds))

    def writer() -> None:
        seq = 10**6
        while not stop.is_set():
            for n in range(1, RUN_CLIENTS * 2 + 1):  # clients the run bench did not write, pruned too
                if stop.is_set():
                    break
                seq += 1
                one_run(url, client_name(n), shape["campaigns"], seq, timed)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(5)  # the writer alone first: its calls' usual time
    store = open_store(url)
    before = datetime.now(timezone.utc) - timedelta(days=KEEP_DAYS)
    began = time.perf_counter()
    history = runs = 0
    longest = 0.0
    for n in range(1, prune_clients + 1):
        start = time.perf_counter()
        h, r = store.prune(client_name(n), before)
        longest = max(longest, time.perf_counter() - start)
        history, runs = history + h, runs + r
    ended = time.perf_counter()
    store.close()
    stop.set()
    thread.join()
    during = [w for w in waits if began <= w[0] < ended]
    alone = [w[2] for w in waits if w[0] < began]
    worst = max(during, key=lambda w: w[2])
    left = execute(url, [("SELECT count(*) FROM campaign_metrics", {}),
                         ("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'campaign_metrics'", {})],
                   fetch=True)
    return {"keep_days": KEEP_DAYS, "clients_pruned": prune_clients, "history_rows": history, "run_records": runs,
            "seconds": ended - began, "history_rows_per_s": history / (ended - began), "longest_client_s": longest,
            "rows_left": left[0], "dead_rows": left[1],
            "concurrent": {"calls": len(during), "longest_wait_s": worst[2], "longest_call": worst[1],
                           "median_wait_s": statistics.median(w[2] for w in during),
                           "p99_wait_s": statistics.quantiles([w[2] for w in during], n=100)[98],
                           "waits_over_1s": sum(1 for w in during if w[2] > 1.0),
                           "median_wait_alone_s": statistics.median(alone), "calls_alone": len(alone)}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--runs", type=int, default=100, help="runs of history per client")
    parser.add_argument("--days", type=int, default=365, help="the history's span")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--prune-clients", type=int, default=0, help="clients pruned (0: all)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    shape = {"clients": args.clients, "campaigns": args.campaigns, "runs": args.runs, "days": args.days,
             "stats": json.dumps(STATS)}
    with throwaway_database("adcrawler_bench", args.postgres) as empty, \
            throwaway_database("adcrawler_bench", args.postgres) as full:
        populate(empty, shape, history=False)
        generate_s = populate(full, shape, history=True)
        raw_bytes, rows = execute(full, [("SELECT avg(octet_length(raw::text)) FROM campaigns", {}),
                                         ("SELECT count(*) FROM campaign_metrics", {})], fetch=True)
        result = {"clients": args.clients, "campaigns": args.campaigns, "runs": args.runs, "days": args.days,
                  "history_rows": rows, "raw_bytes": float(raw_bytes), "generate_s": generate_s,
                  "sizes_mb": sizes(full), "run": run_times(empty, full, shape, args.reps)}
        result["prune"] = prune_under_load(full, shape, args.prune_clients or args.clients)
        result["prune"]["sizes_mb_after"] = sizes(full)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
