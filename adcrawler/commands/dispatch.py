"""``scrapy dispatch CLIENTS [--wait]``: spread clients over the scrapyd nodes (:mod:`adcrawler.fleet`);
with ``--wait``, exit 0 only when every client scheduled succeeded: the mode for cron and the timer."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from decouple import config
from scrapy.commands import ScrapyCommand

from adcrawler.config import EXIT_CONFIG, ConfigError, parse, value
from adcrawler.registry import ClientConfigError, Registry
from adcrawler.store import StoreError, first_line

from . import OperatorCommand

try:  # scrapyd-client is the dispatcher's, not the crawler's: a scrapyd node runs without it
    from adcrawler import fleet
except ImportError as missing:
    fleet, MISSING = None, missing.name


class Command(OperatorCommand, ScrapyCommand):
    reads = ("DATABASE_URL", "ADCRAWLER_DATA_DIR", "ADCRAWLER_CLIENTS_FILE", "ADCRAWLER_SCRAPYD_NODES")

    def syntax(self) -> str:
        return "CLIENTS [--wait] [--nodes URL,URL] [--shard-size N] [--start-limit S] [--dry-run]"

    def short_desc(self) -> str:
        return "Spread clients over scrapyd nodes, in a few jobs of many clients per node"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--nodes", default=None, help="comma-separated scrapyd URLs (ADCRAWLER_SCRAPYD_NODES)")
        parser.add_argument("--shard-size", type=int, default=250, help="most clients in one job")
        parser.add_argument("--wait", action="store_true",
                            help="wait for the jobs to end; exit 0 only if every client succeeded")
        parser.add_argument("--wait-limit", type=float, default=24 * 3600, help="seconds --wait waits at most")
        parser.add_argument("--start-limit", type=float, default=600.0,
                            help="seconds a job may stay pending before its clients go to their next node")
        parser.add_argument("--poll", type=float, default=5.0, help="seconds between --wait's looks at the nodes")
        parser.add_argument("--dry-run", action="store_true", help="print the plan, schedule nothing")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        self.exitcode = dispatch_command(self.settings, args, opts)


def dispatch_command(s: Any, args: list[str], opts: argparse.Namespace) -> int:
    if fleet is None:
        print(f"dispatch: needs {MISSING} (pip install scrapyd-client)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if len(args) != 1:
            raise ConfigError("give the clients to sync: a name, a comma-separated list, or all")
        urls = parse("ADCRAWLER_SCRAPYD_NODES", opts.nodes) if opts.nodes else value(s, "ADCRAWLER_SCRAPYD_NODES")
        if opts.shard_size < 1:
            raise ConfigError(f"--shard-size {opts.shard_size}: expected a whole number > 0")
        if not opts.start_limit > 0:
            raise ConfigError(f"--start-limit {opts.start_limit}: expected seconds > 0")
        registry = Registry.load(value(s, "ADCRAWLER_CLIENTS_FILE"))
        clients = registry.select(args[0])
        if any(c.slug not in registry.clients for c in clients):
            raise ClientConfigError("dispatch sends registry clients only: add the client to the registry")
    except (ConfigError, ClientConfigError) as exc:
        print(f"dispatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    username = config("SCRAPYD_USERNAME", default="")
    password = config("SCRAPYD_PASSWORD", default="")
    if not username or not password:
        print("dispatch: set SCRAPYD_USERNAME and SCRAPYD_PASSWORD", file=sys.stderr)
        return EXIT_CONFIG
    nodes = {url.rstrip("/"): fleet.Node(url, username, password) for url in urls}
    dispatcher = fleet.Fleet(nodes, fleet.PROJECT, registry)
    store = None if opts.dry_run else fleet.open_fleet_store(s, dispatcher.err)
    try:
        run = fleet.dispatch(dispatcher, clients, opts.shard_size, store, opts.dry_run, opts.start_limit)
        if not opts.wait or opts.dry_run:
            return run.status
        logs = fleet.wait(run, store, opts.poll, opts.wait_limit)
        try:
            if store is None:
                raise StoreError("not connected")
            store.drop()  # hours may have passed: a fresh session
            return fleet.report(run, store, logs)
        except Exception as exc:  # noqa: BLE001 - any driver error: said, and the status says it
            dispatcher.err(f"database unavailable ({first_line(exc)}): how the runs ended is not known")
            return 1
    finally:
        if store is not None:
            store.close()
