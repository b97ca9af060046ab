"""``scrapy crawl``, with an exit status that tells whether the sync succeeded.

Scrapy exits 0 whatever the spider did. This command exits 1 unless the spider
finished normally and every client's outcome is ``succeeded`` (every campaign
listed was synced and stored, nothing quarantined or spooled), and logs why.
"""

from __future__ import annotations

import argparse
import logging

from scrapy.commands.crawl import Command as ScrapyCrawl
from scrapy.exceptions import UsageError

from adcrawler.stats import key

logger = logging.getLogger("adcrawler.crawl")


class Command(ScrapyCrawl):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name")
        assert self.crawler_process
        crawler = self._create_crawler(args[0])  # kept: the process forgets finished crawlers
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        if self.crawler_process.bootstrap_failed:
            self.exitcode = 1
            return
        self.exitcode = exit_status(crawler.stats.get_stats())


def exit_status(stats: dict) -> int:
    """0 when the run finished and every client succeeded, else 1 (and log why)."""
    reason = stats.get("finish_reason")
    problems = []
    if reason != "finished":
        problems.append(f"spider closed with reason {reason!r}")
    prefix = key("client") + "/"
    outcomes = {name[len(prefix):-len("/outcome")]: value for name, value in stats.items()
                if name.startswith(prefix) and name.endswith("/outcome")}
    if not outcomes:
        problems.append("no client outcome was recorded")
    problems += [f"client {client}: {outcome}" for client, outcome in sorted(outcomes.items())
                 if outcome != "succeeded"]
    if problems:
        logger.error("Sync incomplete: %s", "; ".join(problems))
        return 1
    logger.info("Sync complete: %d client(s) succeeded", len(outcomes))
    return 0
