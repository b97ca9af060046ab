"""The benchmarks: ``python -m bench`` (``make bench``) writes bench/RESULTS.md and bench/results.json.

    python -m bench [--only a,b,c,d,e,f,g,g2,h,i] [--sizes 10,100,200,400] [--runs N]

Every figure is a ratio or a count from this run, never an absolute time taken
as a promise (these machines are noisy):

a. one client, default faults, time scale 0.05: wall time over the rate-limit
   lower bound for the requests it sent, and 429s;
b. the inherited platform (``--quirks``) at 0.05: wall time over the ideal for
   1 list call + 100 syncs;
c. the inherited style, fixed the obvious way (sequential, a fixed interval),
   against the same platform in the same run;
d. 10 to 400 clients at time scale 0.2 (each client sends five times its real
   rate, so 200 clients cost what 1,000 cost at the real clock): median, p90 and
   worst ratio, 429s, peak memory, CPU per request, and a bare Scrapy spider
   sending as many requests at the same rate, for the CPU yardstick;
e. fairness: 60 clients x 30 campaigns with 32 concurrent requests, faults on
   list calls only;
f. 100,000 campaign upserts into PostgreSQL and SQLite, batched against row by row;
g. the fleet: 400 clients over two real scrapyd nodes at time scale 0.2, in shards
   (a job per node) against one job per client (:mod:`bench.fleet`);
g2. a bad day: 120 clients over three scrapyd nodes in jobs of 10, healthy, then with one node
   lazy (its jobs cancelled after a 25 s start limit) and another killed at a third of the healthy
   makespan, under one ``scrapy dispatch all --wait``: outcomes, exit code, the makespans' ratio,
   429s, campaigns stored twice and synced twice (:func:`bench.fleet.bad_day`);
h. rate-limit signals at time scale 0.05: one client against a platform that
   states its limit in each header style, changes it mid-run (10 -> 5, 10 -> 20)
   with and without saying so, or announces resets early, and ten clients
   sharing one budget: wall time over the ideal under the limits actually in
   force (the platform's own admission rule, ``mock_api.window``), 429s, and
   how evenly the shared budget is spread;
i. history over time, on PostgreSQL: a run's database time beside 10 M history
   rows over that without history, and pruning most of them while a run writes
   (:mod:`bench.history`).

The lower bound of a client is (ceil(requests / limit) - 1) x window + the
latency of its last answer (a sync takes 2 s at the real clock).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adcrawler.budget import lower_bound_seconds
from adcrawler.stats import key
from bench.fleet import bad_day, fleet
from bench.measure import check, crawl, ratios, run_measured, spread
from harness.runner import ROOT, crawl_command, latest_stats
from mock_api.process import MockProcess
from mock_api.window import ideal_sends

OUT = Path(__file__).resolve().parent
LIMIT, WINDOW = 10, 60.0


def one_client(runs: int) -> dict[str, Any]:
    out = []
    for seed in range(1, runs + 1):
        with MockProcess("--time-scale", "0.05", "--seed", str(seed)) as mock, tempfile.TemporaryDirectory() as tmp:
            measured, stats = crawl(mock, ["bench001"], 0.05, Path(tmp))
            check(measured, "one client")
            out.append({"ratio": round(ratios(stats, ["bench001"])[0], 3),
                        "requests": stats[key("requests_sent", "bench001")], "429s": mock.stats()["total_429"]})
    return {"runs": out, "median_ratio": round(statistics.median(r["ratio"] for r in out), 3)}


def quirks_and_naive(runs: int) -> dict[str, Any]:
    scale = 0.05
    ideal = lower_bound_seconds(101, LIMIT, WINDOW * scale, 2.0 * scale)
    crawler_runs, naive_runs = [], []
    for _ in range(runs):
        with MockProcess("--quirks", "--time-scale", str(scale)) as mock, tempfile.TemporaryDirectory() as tmp:
            measured, stats = crawl(mock, ["bench001"], scale, Path(tmp))
            check(measured, "quirks")
            platform_stats = mock.stats()
            client = platform_stats["requests"]["bench001"]
            crawler_runs.append({
                "wall_over_ideal": round(stats[key("elapsed_seconds", "bench001")] / ideal, 3),
                "list_calls": sum(client["list"].values()), "sync_calls": sum(client["sync"].values()),
                "retries": stats.get(key("retries", "bench001"), 0), "429s": platform_stats["total_429"],
                "stored": stats[key("campaigns_stored", "bench001")],
                "synced_ids": sorted(platform_stats["syncs"]["bench001"]) == sorted(
                    f"campaign_{n}" for n in range(1, 101))})
        with MockProcess("--quirks", "--time-scale", str(scale)) as mock:
            proc = subprocess.run([sys.executable, "-m", "bench.naive", mock.url, str(scale)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=3600)
            naive = json.loads(proc.stdout)
            naive_runs.append({"wall_over_ideal": round(naive["wall"] / ideal, 3), "requests": naive["requests"],
                               "synced": naive["synced"], "429s": mock.stats()["total_429"]})
    return {"ideal_seconds": round(ideal, 2), "crawler": crawler_runs, "naive": naive_runs}


def many_clients(size: int, seed: int = 1) -> dict[str, Any]:
    scale = 0.2
    clients = [f"bench{n:03d}" for n in range(1, size + 1)]
    with MockProcess("--time-scale", str(scale), "--seed", str(seed)) as mock, \
            tempfile.TemporaryDirectory() as tmp:
        measured, stats = crawl(mock, clients, scale, Path(tmp))
        check(measured, f"{size} clients")
        total_429 = mock.stats()["total_429"]
    sent = stats["downloader/request_count"]
    result = {
        "clients": size, **spread(ratios(stats, clients)), "429s": total_429,
        "stored": stats[key("campaigns_stored")], "expected": 100 * size,
        "requests": sent, "wall_s": round(measured.wall, 1), "peak_rss_mb": round(measured.max_rss_mb),
        "cpu_s": round(measured.cpu, 1), "cpu_ms_per_request": round(1000 * measured.cpu / sent, 2),
    }
    # The yardstick: a bare Scrapy spider at the same rate, for a third of the
    # requests (the rate is what matters), with Scrapy's defaults, then with
    # the crawler's Scrapy settings (what is left is the crawler's own code).
    rate = sent / measured.wall
    for name, extra in (("bare", []), ("tuned_bare", ["--tuned"])):
        with MockProcess("--time-scale", str(scale), "--quiet", "--rate-limit", "1000000") as mock:
            bare = run_measured([sys.executable, "-m", "bench.bare", mock.url, str(size), str(sent // 3),
                                 f"{rate:.3f}", *extra], dict(os.environ), ROOT, 7200)
            check(bare, name)
        bare_sent = json.loads(bare.output.strip().splitlines()[-1])["requests"]
        result[f"{name}_cpu_ms_per_request"] = round(1000 * bare.cpu / bare_sent, 2)
        result[f"cpu_over_{name}"] = round(result["cpu_ms_per_request"] / result[f"{name}_cpu_ms_per_request"], 3)
    return result


def fairness() -> dict[str, Any]:
    scale = 0.2
    clients = [f"fair{n:03d}" for n in range(1, 61)]
    with MockProcess("--time-scale", str(scale), "--seed", "2", "--quiet", "--campaigns", "30",
                     "--list-503-rate", "0.2", "--list-hang-rate", "0.1") as mock, \
            tempfile.TemporaryDirectory() as tmp:
        measured, stats = crawl(mock, clients, scale, Path(tmp), settings={"CONCURRENT_REQUESTS": "32"})
        check(measured, "fairness")
        total_429 = mock.stats()["total_429"]
    return {"clients": 60, "campaigns": 30, "concurrent_requests": 32, **spread(ratios(stats, clients)),
            "429s": total_429}


SIGNAL_CASES = [  # (name, simulator flags, the limit schedule at the real clock)
    ("no headers, limit 10 (today)", [], []),
    ("ietf headers, limit 10", ["--ratelimit-headers", "ietf"], []),
    ("ietf-06 headers, limit 10", ["--ratelimit-headers", "ietf-06"], []),
    ("x-delta headers, limit 10", ["--ratelimit-headers", "x-delta"], []),
    ("x-epoch headers, limit 10", ["--ratelimit-headers", "x-epoch"], []),
    ("x-epoch-ms headers, limit 10", ["--ratelimit-headers", "x-epoch-ms"], []),
    ("drop 10 -> 5 mid-run, ietf headers", ["--ratelimit-headers", "ietf"], [(300, 5)]),
    ("drop 10 -> 5 mid-run, no headers", [], [(300, 5)]),
    ("rise 10 -> 20 mid-run, ietf headers", ["--ratelimit-headers", "ietf"], [(300, 20)]),
    ("resets announced 5 s early, ietf headers", ["--ratelimit-headers", "ietf", "--reset-early", "5"], []),
]


def signals(runs: int) -> dict[str, Any]:
    scale = 0.05
    window = WINDOW * scale
    out = []
    for name, flags, schedule in SIGNAL_CASES:
        steps = ",".join(f"{at:g}:{limit}" for at, limit in schedule)
        results = []
        for _ in range(runs):
            with MockProcess("--time-scale", str(scale), "--quiet", *flags,
                             *(["--limit-schedule", steps] if steps else [])) as mock, \
                    tempfile.TemporaryDirectory() as tmp:
                measured, stats = crawl(mock, ["bench001"], scale, Path(tmp))
                check(measured, name)
                sent = stats[key("requests_sent", "bench001")]
                ideal = ideal_sends(sent, LIMIT, window, [(at * scale, limit) for at, limit in schedule])[-1] \
                    + stats[key("last_latency_seconds", "bench001")]
                results.append({"ratio": round(stats[key("elapsed_seconds", "bench001")] / ideal, 3),
                                "requests": sent, "429s": mock.stats()["total_429"],
                                "limit_at_end": stats.get(key("rate_limit_effective", "bench001"), LIMIT)})
        out.append({"case": name, "runs": results,
                    "median_ratio": round(statistics.median(r["ratio"] for r in results), 3),
                    "most_429s": max(r["429s"] for r in results)})
    return {"single": out, "shared": [shared_budget(headers) for headers in (True, False)]}


def shared_budget(headers: bool) -> dict[str, Any]:
    """Ten clients of one account, one budget: with headers (learnt from the partition key), or
    without (a budget group in the registry)."""
    scale = 0.05
    clients = [f"share{n:02d}" for n in range(1, 11)]
    flags = ["--ratelimit-headers", "ietf"] if headers else []
    with MockProcess("--time-scale", str(scale), "--quiet", "--campaigns", "20", "--shared-budget", *flags) as mock, \
            tempfile.TemporaryDirectory() as tmp:
        env = {}
        if not headers:
            registry = Path(tmp) / "clients.toml"
            registry.write_text("".join(f'[clients.{c}]\nbudget = "account"\n' for c in clients))
            env["ADCRAWLER_CLIENTS_FILE"] = str(registry)
        cmd, crawl_env = crawl_command(mock.url, ",".join(clients), Path(tmp), scale=scale,
                                       extra_env=env)
        measured = run_measured(cmd, crawl_env, ROOT, 3600)
        check(measured, "shared budget")
        stats = latest_stats(Path(tmp))
        total_429 = mock.stats()["total_429"]
    elapsed = [stats[key("elapsed_seconds", c)] for c in clients]
    sent = sum(stats[key("requests_sent", c)] for c in clients)
    ideal = ideal_sends(sent, LIMIT, WINDOW * scale)[-1] + 2.0 * scale
    return {"clients": 10, "campaigns": 20, "headers": "ietf with pk" if headers else "none (registry budget group)",
            "429s": total_429, "wall_over_ideal": round(max(elapsed) / ideal, 3),
            "slowest_over_fastest_client": round(max(elapsed) / min(elapsed), 3)}


def upserts(rows: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.upserts", "--rows", str(rows)], cwd=ROOT,
                          capture_output=True, text=True, timeout=7200)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout)
    for figures in result.values():
        for name in list(figures):
            figures[name] = round(figures[name])
        figures["batched_50_over_row_by_row"] = round(figures["batched_50"] / figures["row_by_row"], 1)
        figures["batched_50_over_connection_per_row"] = round(figures["batched_50"] / figures["connection_per_row"], 1)
    return {"rows": rows, **result}


def history(prune_clients: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.history", "--prune-clients", str(prune_clients)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout)
    run, prune = result["run"], result["prune"]
    for figures in (result["sizes_mb"], prune["sizes_mb_after"]):
        for name in figures:
            figures[name] = round(figures[name])
    run["ratios"] = [round(x, 3) for x in run["ratios"]]
    for name in ("median_ratio", "median_empty_s", "median_full_s"):
        run[name] = round(run[name], 3)
    for name in ("calls", "calls_share"):
        run[name] = {call: round(x, 3) for call, x in run[name].items()}
    prune["seconds"], prune["longest_client_s"] = round(prune["seconds"], 1), round(prune["longest_client_s"], 3)
    prune["history_rows_per_s"] = round(prune["history_rows_per_s"])
    prune["concurrent"] = {name: round(x, 4) if isinstance(x, float) else x for name, x in prune["concurrent"].items()}
    result["generate_s"], result["raw_bytes"] = round(result["generate_s"]), round(result["raw_bytes"])
    return result


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit.stdout.strip(),
            "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "system": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,d,e,f", help="sections to run (c runs with b)")
    parser.add_argument("--sizes", default="10,100,200,400", help="client counts for section d")
    parser.add_argument("--runs", type=int, default=3, help="runs of sections a, b and c")
    parser.add_argument("--rows", type=int, default=100_000, help="rows for section f")
    parser.add_argument("--prune-clients", type=int, default=0, help="clients pruned in section i (0: all)")
    parser.add_argument("--fleet-clients", type=int, default=400, help="clients for section g")
    parser.add_argument("--fleet-baseline", type=int, default=0,
                        help="clients in section g's one-job-per-client baseline (0: all of them)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    path = OUT / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    command = " ".join(["python -m bench", *sys.argv[1:]])
    when = {k: results["machine"].pop(k) for k in ("date", "commit")}
    runs = results.setdefault("runs", {})  # which command, when and at which commit wrote each section
    steps = [("a", "one_client", lambda: one_client(args.runs)),
             ("b", "quirks", lambda: quirks_and_naive(args.runs)),
             ("d", "many_clients", lambda: [many_clients(int(n)) for n in args.sizes.split(",")]),
             ("e", "fairness", fairness),
             ("f", "upserts", lambda: upserts(args.rows)),
             ("g", "fleet", lambda: fleet(args.fleet_clients, args.fleet_baseline or None)),
             ("g2", "bad_day", bad_day),
             ("h", "signals", lambda: signals(args.runs)),
             ("i", "history", lambda: history(args.prune_clients))]
    for letter, name, run in steps:
        if letter in only:
            print(f"bench: section {letter} ({name})...", flush=True)
            results[name] = run()
            runs[name] = {**when, "command": command}
            print(json.dumps(results[name]), flush=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
    from bench.report import write_report

    write_report(results, OUT / "RESULTS.md")
    print(f"bench: wrote {OUT / 'RESULTS.md'} and {path}")


if __name__ == "__main__":
    main()
