"""Section g, the fleet: clients over real scrapyd nodes, in shards, against one job per client.

At time scale 0.2, ``clients`` clients of 100 campaigns go to two scrapyd nodes
(127.0.0.2 and 127.0.0.3, deploy/scrapyd/run-node, the project's egg) through
``scrapy dispatch --wait``, into one PostgreSQL database:

- fleet: the default shard size (each node runs its share in one job);
- one process: the same clients in one ``scrapy crawl`` (the memory yardstick);
- baseline: the same clients with one job per client (``--shard-size 1``), as the
  dispatcher did before, scrapyd's ``max_proc`` (16) jobs per node at once.

Figures: each client's wall time over its rate-limit lower bound (median, worst),
the makespan (dispatch to the last job's end), the peak of the crawl processes'
summed RSS (sampled from /proc every 0.2 s), 429s, and campaigns stored once.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from adcrawler.stats import key
from bench.measure import check, crawl, ratios, spread
from harness.pg import throwaway_database
from harness.scrapyd import build_egg, dispatch, node_env, start_nodes, write_registry
from mock_api.process import MockProcess

SCALE = 0.2
HOSTS = ["127.0.0.2", "127.0.0.3"]


def _scalar(url: str, sql: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]
    finally:
        conn.close()


class RssSampler(threading.Thread):
    """Peak of the summed RSS of the processes whose parent is one of ``parents``."""

    def __init__(self, parents: list[int]):
        super().__init__(daemon=True)
        self.parents = set(parents)
        self.peak_mb = 0.0
        self.most_processes = 0
        self.stop = threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        while not self.stop.wait(0.2):
            total, count = 0, 0
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) not in self.parents:
                        continue
                    total += int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * self.page
                    count += 1
                except (OSError, ValueError, IndexError):
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.most_processes = max(self.most_processes, count)


def _stats_of_jobs(stats_dir: Path, clients: list[str]) -> dict[str, Any]:
    """The jobs' stats files as one: every client's keys are its own (run-wide keys are not read)."""
    merged: dict[str, Any] = {}
    for path in stats_dir.glob("*.json"):
        merged.update(json.loads(path.read_text()))
    missing = [c for c in clients if key("elapsed_seconds", c) not in merged]
    if missing:
        raise SystemExit(f"no stats for {len(missing)} clients, e.g. {missing[:3]}")
    return merged


def _fleet_run(clients: list[str], shard_size: int | None, tmp: Path, egg: Path, seed: int,
               scale: float) -> dict[str, Any]:
    registry = write_registry(tmp / "clients.toml", clients)
    with throwaway_database("adcrawler_bench") as url, \
            MockProcess("--time-scale", str(scale), "--seed", str(seed)) as mock:
        env = node_env(mock.url, url, tmp, registry, scale=scale)
        nodes = start_nodes(HOSTS, tmp, env)
        try:
            for node in nodes:
                node.deploy(egg)
            # scrapyd runs jobs as children of its own process (run-node execs it).
            sampler = RssSampler([node.proc.pid for node in nodes])
            sampler.start()
            began = time.monotonic()
            args = ["--wait", "--poll", "1"] + (["--shard-size", str(shard_size)] if shard_size else [])
            result = dispatch([n.url for n in nodes], "all", registry, url, *args, timeout=4 * 3600)
            makespan = time.monotonic() - began
            sampler.stop.set()
            sampler.join()
        finally:
            for node in nodes:
                node.stop()
        if result.returncode != 0:
            raise SystemExit(f"dispatch failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        stats = _stats_of_jobs(tmp / "stats", clients)
        return {"makespan_s": round(makespan, 1), "ratios": ratios(stats, clients),
                "requests": sum(stats[key("requests_sent", c)] for c in clients), "429s": mock.stats()["total_429"],
                "peak_rss_mb": round(sampler.peak_mb), "most_crawl_processes": sampler.most_processes,
                "jobs": _scalar(url, "SELECT COUNT(DISTINCT job_id) FROM sync_runs"),
                "stored": _scalar(url, "SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'"),
                "stored_twice": _scalar(url, "SELECT COUNT(*) - COUNT(DISTINCT (client_id, campaign_id)) "
                                             "FROM campaigns"),
                "runs_not_succeeded": _scalar(url, "SELECT COUNT(*) FROM sync_runs WHERE outcome <> 'succeeded'")}


def _one_process(clients: list[str], tmp: Path, seed: int, scale: float) -> dict[str, Any]:
    with throwaway_database("adcrawler_bench") as url, \
            MockProcess("--time-scale", str(scale), "--seed", str(seed)) as mock:
        measured, stats = crawl(mock, clients, scale, tmp, timeout=4 * 3600, database_url=url)
        check(measured, "one process")
        return {"wall_s": round(measured.wall, 1), "ratios": ratios(stats, clients),
                "429s": mock.stats()["total_429"], "peak_rss_mb": round(measured.max_rss_mb)}


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in run.items() if k != "ratios"}, **spread(run["ratios"])}


def fleet(clients_count: int = 400, baseline_count: int | None = None, seed: int = 1,
          scale: float = SCALE) -> dict[str, Any]:
    """Section g. ``baseline_count``: clients in the one-job-per-client baseline (default: all)."""
    clients = [f"bench{n:03d}" for n in range(1, clients_count + 1)]
    baseline_clients = clients[:baseline_count or clients_count]
    out: dict[str, Any] = {"clients": clients_count, "campaigns": 100, "nodes": len(HOSTS), "time_scale": scale}
    with tempfile.TemporaryDirectory() as tmp:
        egg = build_egg(Path(tmp) / "adcrawler.egg")
        for name, run in (("fleet", lambda d: _fleet_run(clients, None, d, egg, seed, scale)),
                          ("one_process", lambda d: _one_process(clients, d, seed, scale)),
                          ("one_job_per_client", lambda d: _fleet_run(baseline_clients, 1, d, egg, seed, scale))):
            print(f"bench g: {name}...", file=sys.stderr, flush=True)
            work = Path(tmp) / name
            work.mkdir()
            out[name] = _summary(run(work))
            print(json.dumps(out[name]), file=sys.stderr, flush=True)
    out["baseline_clients"] = len(baseline_clients)
    # Clients finished per second of makespan: the baseline may hold fewer clients than the fleet.
    fleet_rate = clients_count / out["fleet"]["makespan_s"]
    base_rate = len(baseline_clients) / out["one_job_per_client"]["makespan_s"]
    out["fleet_over_baseline_throughput"] = round(fleet_rate / base_rate, 1)
    out["fleet_rss_over_one_process"] = round(out["fleet"]["peak_rss_mb"] / out["one_process"]["peak_rss_mb"], 2)
    return out


if __name__ == "__main__":  # a quick look: python -m bench.fleet CLIENTS [BASELINE_CLIENTS [SCALE]]
    args = sys.argv[1:]
    print(json.dumps(fleet(int(args[0]) if args else 400, int(args[1]) if len(args) > 1 else None,
                           scale=float(args[2]) if len(args) > 2 else SCALE), indent=2))
