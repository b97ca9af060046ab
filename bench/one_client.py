"""How close a sync comes to the rate-limit lower bound.

    python -m bench.one_client [--scale 0.05] [--clients 1] [--campaigns 100] [--runs 3] [--quiet]

Starts the simulator (default faults: 20% 503, 10% hangs) at a compressed
time scale, syncs the clients in one crawl and prints, per run, the requests
each client sent and its elapsed time as a ratio of the rate-limit lower bound
for those requests: (ceil(requests / limit) - 1) * window. A ratio of 1.00 is
the best any client can do; no figure here is an absolute time, so a noisy
machine does not change the conclusion. ``--quiet`` turns faults off to
measure the crawler's own overhead.

Smaller time scales exaggerate fixed costs (loopback, the event loop, the
0.25 s timeout floor) relative to the window: 0.05 (a 3 s window) is the
default for that reason; 0.01 is what the tests use.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.runner import run_crawl
from mock_api.process import MockProcess

QUIET = ("--list-503-rate", "0", "--list-hang-rate", "0", "--sync-503-rate", "0", "--sync-hang-rate", "0")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.one_client", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quiet", action="store_true", help="no injected faults")
    args = parser.parse_args()
    clients = ",".join(f"bench{i}" for i in range(1, args.clients + 1))
    ratios = []
    print(f"time scale {args.scale}, {args.clients} client(s) x {args.campaigns} campaigns, "
          f"{'no faults' if args.quiet else 'default faults'}")
    print(f"{'run':>3} {'client':>8} {'requests':>8} {'429s':>5} {'lower bound s':>13} {'elapsed s':>9} {'ratio':>6}")
    for run in range(1, args.runs + 1):
        flags = ["--time-scale", str(args.scale), "--campaigns", str(args.campaigns), "--seed", str(run)]
        with MockProcess(*flags, *(QUIET if args.quiet else ())) as mock, \
                tempfile.TemporaryDirectory() as tmp:
            result = run_crawl(mock.url, clients, Path(tmp), scale=args.scale, timeout=3600)
            total_429 = mock.stats()["total_429"]
        if result.returncode != 0:
            raise SystemExit(f"run {run} failed:\n{result.output[-3000:]}")
        for client in clients.split(","):
            lower = result.stat("lower_bound_seconds", client)
            elapsed = result.stat("elapsed_seconds", client)
            ratios.append(elapsed / lower)
            print(f"{run:>3} {client:>8} {result.stat('requests_sent', client):>8} {total_429:>5} "
                  f"{lower:>13.2f} {elapsed:>9.2f} {elapsed / lower:>6.3f}")
    print(f"median ratio {statistics.median(ratios):.3f}, worst {max(ratios):.3f} over {len(ratios)} client runs")


if __name__ == "__main__":
    main()
