"""The demo: start the simulator, sync one client into SQLite, print a summary.

``make demo`` runs it. The simulator runs 100x faster than the real platform
(time scale 0.01) with its default faults (20% 503s and 10% hangs on list and
sync calls, and some on the token endpoint); the crawler gets the matching
budget (10 requests per 0.6 s) and timeouts.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys

from harness.runner import ROOT, run_crawl
from mock_api.process import MockProcess

SCALE = 0.01
CLIENT = "demo"


def main() -> int:
    workdir = ROOT / "data" / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"Starting the Ad Platform simulator (time scale {SCALE}, default faults)...")
    with MockProcess("--time-scale", str(SCALE)) as mock:
        print(f"Simulator at {mock.url}; crawling client {CLIENT!r} into {workdir / 'adcrawler.sqlite3'}")
        result = run_crawl(mock.url, CLIENT, workdir, scale=SCALE)
        platform = mock.stats()
    (workdir / "crawl.log").write_text(result.output)
    db = sqlite3.connect(workdir / "adcrawler.sqlite3")
    rows = db.execute("SELECT COUNT(*), SUM(sync_status = 'synced'), COUNT(quality_flags) FROM campaigns "
                      "WHERE client_id = ?", (CLIENT,)).fetchone()
    quarantined = db.execute("SELECT COUNT(*) FROM rejected_records WHERE client_id = ?", (CLIENT,)).fetchone()[0]
    syncs = platform["syncs"].get(CLIENT, {})
    lower = result.stat("lower_bound_seconds", CLIENT)
    elapsed = result.stat("elapsed_seconds", CLIENT)
    print()
    print("Summary")
    print(f"  outcome               {result.stat('outcome', CLIENT, 'unknown')} (exit status {result.returncode})")
    print(f"  campaigns in database {rows[0]} ({rows[1] or 0} synced, {rows[2]} flagged), {quarantined} quarantined")
    print(f"  synced on platform    {len(syncs)} campaigns, {sum(syncs.values())} successful sync calls")
    print(f"  sync failures         {result.stat('campaigns_sync_failed', CLIENT)}")
    print(f"  requests sent         {result.stat('requests_sent', CLIENT)}, "
          f"retries {result.stat('retries', CLIENT)}")
    print(f"  429s seen             {result.stat('responses_429', CLIENT)} "
          f"(platform answered {platform['total_429']})")
    if lower:
        print(f"  elapsed               {elapsed:.2f}s vs rate-limit lower bound {lower:.2f}s "
              f"(ratio {elapsed / lower:.2f})")
    last = [line for line in result.output.splitlines() if "[adcrawler.crawl]" in line]
    print(f"  last log line         {last[-1].split(': ', 1)[-1] if last else '(none)'}")
    print(f"  log                   {workdir / 'crawl.log'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
