"""``scrapy crawl``: settings, registry, arguments and job directory checked first (one line, exit 2);
after the crawl, exit 0 only when every client succeeded or is held by another run, 2 when the
schema is behind and this role may not migrate it, else 1, with each incomplete client named last."""

from __future__ import annotations

import argparse
import gc
import logging
import re

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError

from adcrawler import disk
from adcrawler.config import CONFIRM_REMOVALS, DRY_RUN, EXIT_CONFIG, RESUME_RUNS, value
from adcrawler.extensions.recorder import JOB, NODE
from adcrawler.ledger import RunLedger
from adcrawler.pipelines import SCHEMA_BEHIND
from adcrawler.registry import ClientConfigError, Registry
from adcrawler.spiders.campaigns import CampaignsSpider
from adcrawler.stats import key

from . import fail, prepare, table

logger = logging.getLogger("adcrawler.crawl")
RUN_ID = re.compile(r"[0-9a-f]{32}")  # as JobState makes them


class Command(ScrapyCrawl):
    def long_desc(self) -> str:
        arguments = "; ".join(f"-a {name}=...: {doc}" for name, doc in CampaignsSpider.arguments.items()
                              if not name.startswith("_"))
        return f"Run a spider. The campaigns spider takes {arguments}. Every setting can be given with -s NAME=value."

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        # Spider arguments every component must know: settings of their own.
        for argument, setting in (("dry_run", DRY_RUN), ("confirm_removals", CONFIRM_REMOVALS), ("_job", JOB),
                                  ("node", NODE), ("resume", RESUME_RUNS)):
            if argument in opts.spargs:
                self.settings.set(setting, opts.spargs[argument], priority="cmdline")
        prepare(self.settings)
        try:
            unknown = sorted(set(opts.spargs) - set(CampaignsSpider.arguments))
            if unknown:
                raise ClientConfigError(f"unknown spider argument(s) {', '.join(unknown)}: campaigns takes "
                                        "-a client=<name>, -a client=a,b or -a client=all, -a dry_run=1 and "
                                        "-a confirm_removals=1")
            bad = [r for r in opts.spargs.get("resume", "").split(",") if r and not RUN_ID.fullmatch(r)]
            if bad:
                raise ClientConfigError(f"-a resume: {bad[0][:40]!r} is not a run id (32 hex digits)")
            Registry.load(value(self.settings, "ADCRAWLER_CLIENTS_FILE")).select(opts.spargs.get("client", ""))
            if self.settings.get("JOBDIR"):
                disk.claim(self.settings["JOBDIR"])
        except (ClientConfigError, disk.JobDirInUse) as exc:
            fail(str(exc), self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name")
        assert self.crawler_process
        crawler = self._create_crawler(args[0])  # kept: the process forgets finished crawlers
        self.crawler_process.crawl(crawler, **opts.spargs)
        tune_gc()
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        ledger = RunLedger.of(crawler)
        if ledger.outcomes():
            # In the template, not an argument: arguments are escaped, and this table's lines are ours.
            logger.info("Summary:\n" + summary(ledger, crawler.stats.get_stats()))
        self.exitcode = exit_status(ledger)


def tune_gc() -> None:
    """A crawl keeps its queued requests and per-client state alive for its whole length; with
    CPython's default thresholds the collector scans them again and again (bench d measures the
    CPU it costs). What lives at start-up is frozen out of collection, and young collections
    happen a tenth as often: a crawl is a finite process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(7_000, 100, 1_000)


def summary(ledger: RunLedger, stats: dict) -> str:
    rows = []
    for client, run in sorted(ledger.runs.items()):
        def g(name: str, c: str = client) -> float:
            return stats.get(key(name, c), 0)

        bound = g("lower_bound_seconds")
        took = f"{g('elapsed_seconds'):.1f}s" + (f" ({g('elapsed_seconds') / bound:.2f}x)" if bound else "")
        if ledger.dry_run:
            stored, synced = run.would_store, len(run.syncable)
        elif run.recorded:  # what the run record says, a resumed run's earlier attempts included
            stored, synced = sum(run.recorded), run.recorded[0]
        else:
            stored, synced = len(run.stored), len(run.synced)
        removed = len(run.removals.removed) if run.removals else 0
        rows.append((run.client.name, run.outcome.name if run.outcome else "-", run.seen, stored, synced,
                     len(run.failed), run.quarantined, removed, run.requests_sent, g("responses_429"), took))
    header = ("client", "outcome", "listed", "would store" if ledger.dry_run else "stored",
              "would sync" if ledger.dry_run else "synced", "sync failed", "quarantined", "removed", "requests",
              "429s", "time (x lower bound)")
    return table(header, rows)


def exit_status(ledger: RunLedger) -> int:
    """Logs the last line; returns the exit status."""
    complete, line = ledger.final_line()
    (logger.info if complete else logger.error)("%s", line)
    if ledger.finish_reason == SCHEMA_BEHIND:
        return EXIT_CONFIG  # a deployment step is missing: the same status as a bad setting
    return 0 if complete else 1
