"""bench/RESULTS.md from bench/results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def _when(r: dict[str, Any], name: str) -> list[str]:
    run = r.get("runs", {}).get(name)
    return [f"Run by `{run['command']}` on {run['date']}, commit {run['commit']}.", ""] if run else []


def write_report(r: dict[str, Any], path: Path) -> None:
    m = r["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench` (`make bench`; `--only` reruns some sections) on {m['cpus']} CPUs, "
        f"{m['machine']}, {m['system']}, Python {m['python']}. The simulator runs on the same machine. Every "
        "figure is a ratio or a count from the same run of its section; `results.json` holds them all.",
        "",
        "A client's lower bound is (⌈requests / 10⌉ − 1) × window + the latency of its last answer: the least "
        "time the platform's budget allows for the requests it sent. The ratio is the client's wall time (from "
        "the crawler's start to its last answer) over that bound.",
        "",
    ]
    if "one_client" in r:
        a = r["one_client"]
        lines += ["## a. One client, default faults, time scale 0.05 (a 3 s window)", "", *_when(r, "one_client"),
                  *_table(["run", "requests sent", "wall / lower bound", "429s"],
                          [[i + 1, x["requests"], x["ratio"], x["429s"]] for i, x in enumerate(a["runs"])]),
                  "", f"Median ratio {a['median_ratio']}.", ""]
    if "quirks" in r:
        b = r["quirks"]
        lines += ["## b, c. The inherited platform (`--quirks`), time scale 0.05", "", *_when(r, "quirks"),
                  f"Ideal for 1 list call + 100 syncs: {b['ideal_seconds']} s (10 windows + one sync's 0.1 s).", "",
                  *_table(["run", "crawler: wall / ideal", "list calls", "sync calls", "retries", "429s",
                           "stored", "synced campaign_1..100 once", "inherited style: wall / ideal", "its requests",
                           "its 429s"],
                          [[i + 1, c["wall_over_ideal"], c["list_calls"], c["sync_calls"], c["retries"], c["429s"],
                            c["stored"], c["synced_ids"], n["wall_over_ideal"], n["requests"], n["429s"]]
                           for i, (c, n) in enumerate(zip(b["crawler"], b["naive"], strict=True))]),
                  "", "The inherited style, fixed the obvious way: pages of 10, one request every 6.5 s, "
                  "sequential (`bench/naive.py`).", ""]
    if "many_clients" in r:
        lines += ["## d. Many clients in one process, default faults, time scale 0.2 (a 12 s window)", "",
                  *_when(r, "many_clients"),
                  "At 0.2 each client sends five times its real rate: 200 clients here cost what 1,000 cost at the "
                  "real clock. The bare spider (`bench/bare.py`) sends requests at the crawler's rate against the "
                  "same simulator, with nothing of ours: with Scrapy's defaults, and tuned with the crawler's Scrapy "
                  "settings and garbage-collection tuning, so that the last column is the cost of the crawler's own "
                  "code.", "",
                  *_table(["clients", "median", "p90", "worst", "429s", "stored / expected", "requests",
                           "peak RSS MB", "CPU s", "CPU ms / request", "bare spider ms / request",
                           "crawler / bare", "tuned bare ms / request", "crawler / tuned bare"],
                          [[d["clients"], d["median"], d["p90"], d["worst"], d["429s"],
                            f"{d['stored']} / {d['expected']}", d["requests"], d["peak_rss_mb"], d["cpu_s"],
                            d["cpu_ms_per_request"], d["bare_cpu_ms_per_request"], d["cpu_over_bare"],
                            d["tuned_bare_cpu_ms_per_request"], d["cpu_over_tuned_bare"]]
                           for d in r["many_clients"]]), ""]
    if "fairness" in r:
        e = r["fairness"]
        lines += ["## e. Fairness: 60 clients x 30 campaigns, 32 concurrent requests, faults on list calls only", "",
                  *_when(r, "fairness"),
                  *_table(["median", "p90", "worst", "429s"], [[e["median"], e["p90"], e["worst"], e["429s"]]]), ""]
    if "upserts" in r:
        f = r["upserts"]
        rows = [[db, x["batched_50"], x["batched_500"], x["row_by_row"], x["connection_per_row"],
                 x["batched_50_over_row_by_row"], round(x["batched_500"] / x["row_by_row"], 1),
                 x["batched_50_over_connection_per_row"]]
                for db, x in f.items() if isinstance(x, dict)]
        lines += [f"## f. {f['rows']:,} campaign upserts", "", *_when(r, "upserts"),
                  "Rows per second. Batched: `Store.write_batch` (upsert with change detection plus the history "
                  "row; on PostgreSQL the batch is copied into a temporary table first), batches of 50 (the "
                  "crawler's default) and 500. Row by row: the same parameterized upsert, "
                  "one transaction per row, on one connection, and with a new connection per row as the inherited "
                  "script did (measured on fewer rows; the rate is what counts).", "",
                  *_table(["database", "batched (50)", "batched (500)", "row by row", "connection per row",
                           "batched (50) / row by row", "batched (500) / row by row",
                           "batched (50) / connection per row"], rows), ""]
    if "fleet" in r:
        g = r["fleet"]
        rows = [[name, x.get("jobs", 1), x.get("most_crawl_processes", 1), x["median"], x["worst"],
                 x.get("makespan_s", x.get("wall_s")), x["peak_rss_mb"], x["429s"],
                 f"{x['stored']:,}" if "stored" in x else "", x.get("stored_twice", "")]
                for name, x in (("fleet (shards)", g["fleet"]), ("one process", g["one_process"]),
                                (f"one job per client ({g['baseline_clients']} clients)", g["one_job_per_client"]))]
        lines += [f"## g. The fleet: {g['clients']} clients x {g['campaigns']} campaigns over {g['nodes']} scrapyd "
                  f"nodes, default faults, time scale {g['time_scale']}", "", *_when(r, "fleet"),
                  "Real scrapyd nodes on 127.0.0.2 and .3 (deploy/scrapyd/run-node, the project's egg), one "
                  "PostgreSQL database, `scrapy dispatch all --wait`: with the default shard size, "
                  "then with `--shard-size 1` (one job per client, as before); and the same clients in one "
                  "`scrapy crawl` as the memory yardstick. Makespan: from the dispatch to the last job's end. "
                  "RSS: the peak of the crawl processes' summed resident memory (sampled every 0.2 s).", "",
                  *_table(["run", "jobs", "crawl processes at once (most)", "median ratio", "worst ratio",
                           "makespan / wall (s)", "peak RSS (MB)", "429s", "campaigns stored", "stored twice"],
                          rows), "",
                  f"Fleet over one job per client, clients finished per second of makespan: "
                  f"**{g['fleet_over_baseline_throughput']}x**. Fleet peak RSS over one process: "
                  f"**{g['fleet_rss_over_one_process']}x**.", ""]
    if "bad_day" in r:
        g = r["bad_day"]
        runs = (("healthy", g["healthy"]), ("bad day", g["bad_day"]))
        k = g["bad_day"]["killed"]
        lines += [f"## g2. A bad day: {g['clients']} clients x {g['campaigns']} campaigns over {g['nodes']} scrapyd "
                  f"nodes, jobs of {g['shard_size']} clients, time scale {g['time_scale']}", "",
                  *_when(r, "bad_day"),
                  "Real scrapyd nodes on 127.0.0.2 to .4, one PostgreSQL database and one simulator per run, "
                  f"`scrapy dispatch all --wait --shard-size {g['shard_size']} --start-limit {g['start_limit_s']:g} "
                  "--poll 1`, the same clients and seed twice: three healthy nodes; then the bad day, 127.0.0.2 "
                  "lazy (it takes jobs and never starts them) and 127.0.0.3 killed (its crawls, then scrapyd, "
                  "SIGKILL) at a third of the healthy makespan, while the one dispatch waits. Latest outcome: "
                  "each client's last run that was not skipped. Synced twice: campaigns the platform executed "
                  "more than once.", "",
                  *_table(["run", "exit code", "latest outcomes", "not succeeded after a move",
                           "jobs", "jobs cancelled", "makespan (s)", "median ratio", "worst ratio", "429s",
                           "campaigns stored", "stored twice", "synced twice", "load average (5 min, at the end)"],
                          [[name, x["exit_code"], ", ".join(f"{n} {o}" for o, n in sorted(x["latest_outcomes"].items()))
                            + (f", {x['clients_without_run']} no run" if x["clients_without_run"] else ""),
                            x["not_succeeded_after_a_move"], x["jobs"], x["jobs_cancelled"], x["makespan_s"],
                            x["median"], x["worst"], x["429s"], f"{x['stored']:,}", x["stored_twice"],
                            f"{x['synced_twice']:,}", x["load_average_5m"]] for name, x in runs]), "",
                  "Ratios: each client's wall time over its rate-limit lower bound, of the clients whose job wrote "
                  "its stats (a killed job writes none).", "",
                  f"Bad day over healthy makespan: **{g['bad_over_healthy_makespan']}x** (target <= 2). "
                  f"The node was killed at {k['at_s']} s with {k['clients']} runs going; "
                  f"{k['rerun_elsewhere']} of their clients ran again elsewhere in the same dispatch. Those runs "
                  f"had the platform execute {k['syncs_executed_by_killed_runs']:,} syncs, "
                  f"{k['of_which_stored_by_them']:,} of them stored before the kill and {k['in_flight']:,} in "
                  f"flight (executed, not stored); the clients run again had "
                  f"{k['synced_twice_of_their_clients']:,} campaigns synced twice. Their leases "
                  f"({g['lease_s']:g} s unrenewed) held them {k['lease_left_at_kill_s']} s more after the kill"
                  + (f", {g['lease_wait_share_of_extra_pct']}% of the bad day's extra time."
                     if g["lease_wait_share_of_extra_pct"] is not None else "."), "",
                  "A client's run on its next node finishes the killed run (`-a resume`): what that run stored "
                  "is not synced again, so only the syncs in flight at the kill run twice. The synced-twice column "
                  "also counts the syncs retried after a timeout, healthy or not (the simulator ignores "
                  "Idempotency-Keys by default).", "",
                  *([f"{g['bad_day']['not_succeeded_after_a_move']} clients did not succeed after a move.", ""]
                    if g["bad_day"]["not_succeeded_after_a_move"] else []),
                  *[f"**PostgreSQL restarted during the {name} run** (the server is shared): its figures "
                    "include that outage." for name, x in runs if x.get("postgres_restarted")]]
        if g["bad_day"].get("dispatch_stderr"):
            lines += ["What the bad day's dispatch said on stderr (besides its cancellations), first lines:", "",
                      "```", *g["bad_day"]["dispatch_stderr"], "```", ""]
    if "signals" in r:
        h = r["signals"]
        lines += ["## h. Rate-limit signals, time scale 0.05 (a 3 s window)", "", *_when(r, "signals"),
                  "One client, 100 campaigns, no injected faults. The ideal is what a client knowing every rule "
                  "of the platform would take for the requests the crawler sent, under the limits in force (the "
                  "simulator's own admission rule, `mock_api/window.py`), plus the last answer's latency. "
                  "Each figure is the median of its runs; 429s the most in one run.", "",
                  *_table(["case", "wall / ideal (median)", "runs", "429s (most in a run)", "limit at the end"],
                          [[c["case"], c["median_ratio"], " ".join(str(x["ratio"]) for x in c["runs"]),
                            c["most_429s"], c["runs"][-1]["limit_at_end"]] for c in h["single"]]), "",
                  "Ten clients of one account sharing one budget of 10 per window (20 campaigns each): wall time "
                  "of the slowest client over the ideal for all their requests through one budget, and how "
                  "evenly it was shared.", "",
                  *_table(["signals", "429s", "slowest client / ideal", "slowest / fastest client"],
                          [[x["headers"], x["429s"], x["wall_over_ideal"], x["slowest_over_fastest_client"]]
                           for x in h["shared"]]), ""]
    if "history" in r:
        i = r["history"]
        run, prune, load, mb = i["run"], i["prune"], i["prune"]["concurrent"], i["sizes_mb"]
        lines += [f"## i. History over time: a run's database time beside {i['history_rows']:,} history rows, and "
                  "pruning them (PostgreSQL)", "", *_when(r, "history"),
                  f"Two databases with the same {i['clients']:,} clients x {i['campaigns']} campaigns in `campaigns` "
                  f"(raw records of {i['raw_bytes']} bytes on average); one of them also with {i['runs']} runs of "
                  f"history per client over {i['days']} days: {i['history_rows']:,} `campaign_metrics` rows "
                  f"({mb['campaign_metrics']:,} MB with its indexes: {mb['campaign_metrics_heap']:,} MB of rows, "
                  f"{mb['campaign_metrics_indexes']:,} MB of indexes) and {i['clients'] * i['runs']:,} `sync_runs` "
                  f"rows ({mb['sync_runs']} MB), made by one INSERT ... SELECT FROM generate_series each in "
                  f"{i['generate_s']} s (the history's indexes built after its rows), then ANALYZE "
                  "(`bench/history.py`).", "",
                  f"A run's database time: the store calls of each client's run of {i['campaigns']} campaigns, as the "
                  "recorder and the pipeline make them (lease, last success, run record started, known problems, "
                  "`write` in batches of 50, lease renewal, removals, fields, run record completed, lease released; "
                  f"the connection's opening not counted), for {run['clients_per_rep']} clients in turn, each "
                  "client's run in the database with the history and in the one without back to back (which goes first "
                  "alternates): each repetition's time with the history over its time without:", "",
                  *_table(["repetition", *map(str, range(1, len(run["ratios"]) + 1)), "median"],
                          [["with history / without", *run["ratios"], f"**{run['median_ratio']}**"]]), "",
                  "Per call: the median time with the history over the median without, and its share of the "
                  "run's time with the history (median):", "",
                  *_table(["", *run["calls"]], [["with / without", *run["calls"].values()],
                                                ["share", *run["calls_share"].values()]]), "",
                  f"Pruning with `ADCRAWLER_KEEP_DAYS={prune['keep_days']}`: `prune(client, now - "
                  f"{prune['keep_days']} days)` for {prune['clients_pruned']:,} of the {i['clients']:,} clients, one "
                  "after the other on one connection (a fleet's runs each prune their own client), while a thread "
                  "ran other clients' runs through the same store calls on its own connection, each call timed "
                  "(a wait: one call's time).", "",
                  *_table(["history rows pruned", "run records pruned", "seconds", "history rows / s",
                           "longest client (s)", "history rows left"],
                          [[f"{prune['history_rows']:,}", f"{prune['run_records']:,}", prune["seconds"],
                            f"{prune['history_rows_per_s']:,}", prune["longest_client_s"],
                            f"{prune['rows_left']:,}"]]), "",
                  *_table(["the concurrent run's calls", "longest wait (s)", "its call", "median wait (s)",
                           "p99 wait (s)", "waits over 1 s", "median wait, the run alone before the prune (s)"],
                          [[load["calls"], f"**{load['longest_wait_s']}**", load["longest_call"],
                            load["median_wait_s"], load["p99_wait_s"], load["waits_over_1s"],
                            load["median_wait_alone_s"]]]), "",
                  f"After the prune `campaign_metrics` takes {prune['sizes_mb_after']['campaign_metrics']:,} MB "
                  f"with {prune['dead_rows']:,} dead rows until a VACUUM makes their space reusable.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    import json
    import sys

    here = Path(__file__).resolve().parent
    write_report(json.loads((here / "results.json").read_text()), here / "RESULTS.md")
    sys.exit(0)
