"""``scrapy runs [CLIENT] [-n N]``: a client's last runs (by its slug or its client id), or every
client's, newest first, with their outcome, counts and what ran them. ``scrapy runs --stale [AGE]``:
every registry client's last success and last outcome; exit 1 when one is older than AGE."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timezone

from scrapy.commands import ScrapyCommand

from adcrawler.config import value
from adcrawler.extensions.recorder import run_log
from adcrawler.registry import ClientConfigError, Registry
from adcrawler.stats import key

from . import OperatorCommand, fail, table

CHANGES = (("campaigns_removed", "removed {}"), ("campaigns_back", "back {}"), ("campaigns_removal_held", "held {}"),
           ("fields_new", "new fields {}"), ("fields_vanished", "vanished fields {}"))


def changes(run: dict) -> str:
    """What a run changed over time, from its stats: removals, returns, held removals, fields."""
    stats = run.get("stats") or {}
    counts = ((stats.get(key(name, run["client_id"]), 0), text) for name, text in CHANGES)
    return ", ".join(text.format(n) for n, text in counts if n) or "-"


class Command(OperatorCommand, ScrapyCommand):
    reads = (*OperatorCommand.reads, "ADCRAWLER_SYNC_MAX_AGE")

    def syntax(self) -> str:
        return "[CLIENT] [-n N] | --stale [AGE]"

    def short_desc(self) -> str:
        return "Show the last runs of a client (or of every client), newest first"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("-n", dest="limit", type=int, default=10, help="how many runs (default 10)")
        parser.add_argument("--stale", nargs="?", const="", default=None, metavar="AGE",
                            help="every client's last success; exit 1 if one is older than AGE (like 12h, 30m or "
                                 "3600; default ADCRAWLER_SYNC_MAX_AGE)")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        registry = self.registry()
        if opts.stale is not None:
            try:
                age = parse_age(opts.stale) if opts.stale else value(self.settings, "ADCRAWLER_SYNC_MAX_AGE")
            except ValueError as exc:
                fail(str(exc), self.settings)
            self.stale(registry, age)
            return
        try:
            client = registry.find(args[0]) if args else None
        except ClientConfigError as exc:
            fail(str(exc), self.settings)
        names = {c.client_id: c.name for c in registry.clients.values()}
        found = self.with_store("read the runs", lambda store: (
            store.last_runs(client and client.client_id, max(1, opts.limit)),
            store.leases() if store.dialect == "postgresql" else None))
        if found is None:
            return
        runs, leases = found
        rows = []
        for r in runs:
            if r["outcome"] == "running" and leases is not None:
                r["outcome_reasons"] = lease_text(leases.get(r["client_id"]), r["run_id"])
            took = f"{(r['finished_at'] - r['started_at']).total_seconds():.0f}s" if r["finished_at"] else "-"
            rows.append((r["started_at"].strftime("%Y-%m-%d %H:%M:%S"), names.get(r["client_id"], r["client_id"]),
                         took, r["outcome"] or "-",
                         f"{r['campaigns_seen']}/{r['campaigns_synced']}/{r['campaigns_failed']}",
                         f"{r['rows_inserted']}/{r['rows_updated']}", r["records_rejected"], r["run_id"][:12],
                         changes(r), ran_by(r), r["outcome_reasons"] or ""))
        print(table(("started (UTC)", "client", "took", "outcome", "seen/synced/failed", "ins/upd",
                     "quarantined", "run", "changes", "ran by", "reasons"), rows))
        data_dir = value(self.settings, "ADCRAWLER_DATA_DIR")
        for r in runs:  # a run's own log, beside its stats on the host that ran it
            path = run_log(data_dir, r["run_id"])
            print(f"run {r['run_id'][:12]}: log {path}" if path.exists() else
                  f"run {r['run_id'][:12]}: log {path.relative_to(data_dir)} under ADCRAWLER_DATA_DIR on "
                  f"{r['node'] or 'the host that ran it'}")
        print(f"{len(rows)} run(s)" + (f" of {client.name}" if client else ""))

    def stale(self, registry: Registry, age: float) -> None:
        states = self.with_store("read the runs", lambda store: store.client_states())
        if states is None:
            return
        now, rows, stale = datetime.now(timezone.utc), [], 0
        for client in sorted(registry.clients.values(), key=lambda c: c.name):
            state = states.get(client.client_id, {})
            last = state.get("last_success")
            old = last is None or (now - last).total_seconds() > age
            stale += old
            rows.append(("stale" if old else "ok", client.name,
                         last.strftime("%Y-%m-%d %H:%M:%S") if last else "never",
                         duration((now - last).total_seconds()) if last else "-",
                         state.get("outcome", "never ran"), state.get("reasons") or ""))
        print(table(("state", "client", "last success (UTC)", "age", "last outcome", "reasons"), rows))
        print(f"{stale} of {len(rows)} client(s) stale: no success within {duration(age)}")
        self.exitcode = 1 if stale else 0


def parse_age(text: str) -> float:
    """``12h``, ``30m``, ``2d``, ``90s`` or a number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"--stale {text!r}: expected an age like 12h, 30m, 2d or a number of seconds")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def duration(seconds: float) -> str:
    """``3d 4h``, ``5h 12m``, ``12m 5s`` or ``42s``: an age a person reads at a glance."""
    seconds = int(seconds)
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // small_size
            return f"{seconds // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{seconds}s"


def lease_text(lease: dict | None, run_id: str) -> str:
    """What a running row's lease says (PostgreSQL; SQLite's locks are files): is the run alive?"""
    if lease is None or lease["run_id"] != run_id:
        return "holds no lease: its process has ended"
    until = lease["expires_at"].strftime("%H:%M:%S")
    return f"lease held by {lease['holder']} until {until}" if lease["live"] else f"lease expired at {until}"


def ran_by(run: dict) -> str:
    """The scrapyd job and node, or the host and process of a crawl started by hand."""
    if run.get("job_id"):
        return f"job {run['job_id']} on {run['node']}" + (f" ({run['egg_version']})" if run.get("egg_version") else "")
    return f"{run['node']} pid {run['pid']}" if run.get("node") else "-"
