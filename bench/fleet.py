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

Section g2, a bad day (:func:`bad_day`): the same clients over three nodes (127.0.0.2 to .4) in
shards of ``--shard-size``, healthy, then with the first node lazy (it takes jobs and never starts
them: cancelled after ``--start-limit``) and the second one killed (its crawls and itself, SIGKILL)
at a third of the healthy makespan, while one ``scrapy dispatch all --wait`` waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from adcrawler.registry import scheduled_at
from adcrawler.stats import key
from adcrawler.store import LEASE
from bench.measure import check, crawl, ratios, spread
from harness.pg import throwaway_database
from harness.runner import ROOT
from harness.scrapyd import build_egg, dispatch, dispatch_command, node_env, start_nodes, write_registry
from mock_api.process import MockProcess

SCALE = 0.2
HOSTS = ["127.0.0.2", "127.0.0.3"]
BAD_DAY_HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]  # the first lazy, the second killed on the bad day


def _rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def _scalar(url: str, sql: str, params: tuple = ()) -> Any:
    return _rows(url, sql, params)[0][0]


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


def _day_run(clients: list[str], tmp: Path, egg: Path, seed: int, scale: float, shard_size: int,
             start_limit: float, kill_at: float | None) -> dict[str, Any]:
    """One ``dispatch all --wait`` over three nodes; with ``kill_at``, the bad day: the first node
    lazy, the second killed ``kill_at`` s after the dispatch began."""
    registry = write_registry(tmp / "clients.toml", clients)
    with throwaway_database("adcrawler_bench") as url, \
            MockProcess("--time-scale", str(scale), "--seed", str(seed)) as mock:
        env = node_env(mock.url, url, tmp, registry, scale=scale)
        nodes = start_nodes(BAD_DAY_HOSTS, tmp, env, lazy=BAD_DAY_HOSTS[:1] if kill_at is not None else ())
        killed: dict[str, Any] = {}
        pg_started = _scalar(url, "SELECT pg_postmaster_start_time()")  # the server is shared: a restart is said
        try:
            for node in nodes:
                node.deploy(egg)
            cmd, dispatch_env = dispatch_command([n.url for n in nodes], "all", registry, url, "--wait", "--poll",
                                                 "1", "--shard-size", str(shard_size), "--start-limit",
                                                 str(start_limit))
            with (tmp / "dispatch.out").open("w") as stdout, (tmp / "dispatch.err").open("w") as stderr:
                began = time.monotonic()
                proc = subprocess.Popen(cmd, cwd=ROOT, env=dispatch_env, stdout=stdout, stderr=stderr, text=True)
                try:
                    if kill_at is not None:
                        time.sleep(max(0.0, began + kill_at - time.monotonic()))
                        dead = nodes[1]
                        dead.kill()
                        killed["at_s"] = round(time.monotonic() - began, 1)
                        runs = _rows(url, "SELECT client_id, run_id FROM sync_runs WHERE node = %s AND "
                                          "outcome = 'running'", (dead.url,))
                        # How long the killed runs' clients are held: the latest of their leases.
                        killed["lease_left_s"] = round(float(_scalar(
                            url, "SELECT COALESCE(EXTRACT(EPOCH FROM MAX(expires_at) - now()), 0) FROM client_leases "
                                 "WHERE client_id = ANY(%s)", ([c for c, _ in runs],))), 1)
                        time.sleep(2)  # the syncs the platform was answering when the node died
                        executed = mock.stats()["syncs"]
                        killed["runs"] = runs
                        killed["syncs_executed"] = sum(sum(executed.get(c, {}).values()) for c, _ in runs)
                    returncode = proc.wait(timeout=3600)
                    makespan = time.monotonic() - began
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        finally:
            for node in nodes:
                node.stop()
        said = (tmp / "dispatch.out").read_text().strip().splitlines()
        said_err = (tmp / "dispatch.err").read_text().splitlines()
        latest = _rows(url, "SELECT DISTINCT ON (client_id) client_id, outcome, job_id FROM sync_runs "
                            "WHERE outcome <> 'skipped' ORDER BY client_id, started_at DESC")
        first = min(scheduled_at(j) for _, _, j in latest)
        syncs = mock.stats()["syncs"]
        twice = sum(n > 1 for c in clients for n in syncs.get(c, {}).values())
        stats: dict[str, Any] = {}
        for path in (tmp / "stats").glob("*.json"):  # a killed job wrote none
            stats.update(json.loads(path.read_text()))
        timed = [c for c in clients if key("elapsed_seconds", c) in stats]
        out = {"exit_code": returncode, "makespan_s": round(makespan, 1),
               "latest_outcomes": dict(Counter(o for _, o, _ in latest)),
               # Not succeeded, last placed in a job scheduled past the start limit: after a move.
               "not_succeeded_after_a_move": sum(o != "succeeded" and scheduled_at(j) - first >= start_limit
                                                 for _, o, j in latest),
               "clients_timed": len(timed), **spread(ratios(stats, timed)),
               "load_average_5m": round(os.getloadavg()[1], 1),
               "clients_without_run": len(clients) - len(latest), "429s": mock.stats()["total_429"],
               "jobs": _scalar(url, "SELECT COUNT(DISTINCT job_id) FROM sync_runs"),
               "jobs_cancelled": sum("has not started in" in line for line in said_err),
               "stored": _scalar(url, "SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'"),
               "stored_twice": _scalar(url, "SELECT COUNT(*) - COUNT(DISTINCT (client_id, campaign_id)) "
                                            "FROM campaigns"),
               "synced_twice": twice, "dispatch_summary": said[-1] if said else "",
               "postgres_restarted": _scalar(url, "SELECT pg_postmaster_start_time()") != pg_started}
        if killed:
            ids = [r for _, r in killed["runs"]]
            stored = _scalar(url, "SELECT COUNT(*) FROM campaign_metrics WHERE run_id = ANY(%s) AND "
                                  "sync_status = 'synced'", (ids,))
            rerun = {c for c, in _rows(url, "SELECT client_id FROM sync_runs WHERE outcome = 'succeeded' AND "
                                            "client_id = ANY(%s)", ([c for c, _ in killed["runs"]],))}
            out["killed"] = {"at_s": killed["at_s"], "clients": len(ids), "rerun_elsewhere": len(rerun),
                             "lease_left_at_kill_s": killed["lease_left_s"],
                             "syncs_executed_by_killed_runs": killed["syncs_executed"],
                             "of_which_stored_by_them": stored, "in_flight": killed["syncs_executed"] - stored,
                             "synced_twice_of_their_clients": sum(n > 1 for c in rerun for n in syncs[c].values())}
            out["dispatch_stderr"] = [line for line in said_err if "has not started" not in line][:12]
        return out


def bad_day(clients_count: int = 120, shard_size: int = 10, start_limit: float = 25.0, seed: int = 1,
            scale: float = SCALE) -> dict[str, Any]:
    """Section g2: the same clients healthy, then on a bad day; the makespans' ratio (target <= 2)."""
    clients = [f"bench{n:03d}" for n in range(1, clients_count + 1)]
    out: dict[str, Any] = {"clients": clients_count, "campaigns": 100, "nodes": len(BAD_DAY_HOSTS),
                           "time_scale": scale, "shard_size": shard_size, "start_limit_s": start_limit,
                           "lease_s": max(LEASE * scale, 10.0)}
    with tempfile.TemporaryDirectory() as tmp:
        egg = build_egg(Path(tmp) / "adcrawler.egg")
        for name in ("healthy", "bad_day"):
            print(f"bench g2: {name}...", file=sys.stderr, flush=True)
            work = Path(tmp) / name
            work.mkdir()
            kill_at = out["healthy"]["makespan_s"] / 3 if name == "bad_day" else None
            out[name] = _day_run(clients, work, egg, seed, scale, shard_size, start_limit, kill_at)
            print(json.dumps(out[name]), file=sys.stderr, flush=True)
    out["bad_over_healthy_makespan"] = round(out["bad_day"]["makespan_s"] / out["healthy"]["makespan_s"], 2)
    extra = out["bad_day"]["makespan_s"] - out["healthy"]["makespan_s"]
    out["lease_wait_share_of_extra_pct"] = round(100 * out["bad_day"]["killed"]["lease_left_at_kill_s"] / extra) \
        if extra > 0 else None
    return out


if __name__ == "__main__":  # a quick look: python -m bench.fleet CLIENTS [BASELINE_CLIENTS [SCALE]]
    args = sys.argv[1:]
    if args[:1] == ["bad-day"]:  # python -m bench.fleet bad-day CLIENTS SHARD_SIZE START_LIMIT SCALE
        print(json.dumps(bad_day(int(args[1]), int(args[2]), float(args[3]), scale=float(args[4])), indent=2))
        sys.exit(0)
    print(json.dumps(fleet(int(args[0]) if args else 400, int(args[1]) if len(args) > 1 else None,
                           scale=float(args[2]) if len(args) > 2 else SCALE), indent=2))
