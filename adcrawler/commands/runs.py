"""``scrapy runs [CLIENT] [-n N]``: a client's last runs (by its slug or its client id), or every
client's, newest first, with their outcome, counts and what ran them."""

from __future__ import annotations

import argparse

from scrapy.commands import ScrapyCommand

from adcrawler.registry import ClientConfigError

from . import OperatorCommand, fail, table


class Command(OperatorCommand, ScrapyCommand):
    def syntax(self) -> str:
        return "[CLIENT] [-n N]"

    def short_desc(self) -> str:
        return "Show the last runs of a client (or of every client), newest first"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-n", dest="limit", type=int, default=10, help="how many runs (default 10)")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        registry = self.registry()
        try:
            client = registry.find(args[0]) if args else None
        except ClientConfigError as exc:
            fail(str(exc), self.settings)
        names = {c.client_id: c.name for c in registry.clients.values()}
        runs = self.with_store("read the runs", lambda store: store.last_runs(client and client.client_id,
                                                                              max(1, opts.limit)))
        if runs is None:
            return
        rows = []
        for r in runs:
            took = f"{(r['finished_at'] - r['started_at']).total_seconds():.0f}s" if r["finished_at"] else "-"
            rows.append((r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), names.get(r["client_id"], r["client_id"]),
                         took, r["outcome"] or "-",
                         f"{r['campaigns_seen']}/{r['campaigns_synced']}/{r['campaigns_failed']}",
                         f"{r['rows_inserted']}/{r['rows_updated']}", r["records_rejected"], r["run_id"][:12],
                         ran_by(r), r["outcome_reasons"] or ""))
        print(table(("started (UTC)", "client", "took", "outcome", "seen/synced/failed", "ins/upd",
                     "quarantined", "run", "ran by", "reasons"), rows))
        print(f"{len(rows)} run(s)" + (f" of {client.name}" if client else ""))


def ran_by(run: dict) -> str:
    """The scrapyd job and node, or the host and process of a crawl started by hand."""
    if run.get("job_id"):
        return f"job {run['job_id']} on {run['node']}" + (f" ({run['egg_version']})" if run.get("egg_version") else "")
    return f"{run['node']} pid {run['pid']}" if run.get("node") else "-"
