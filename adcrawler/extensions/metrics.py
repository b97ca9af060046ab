"""Prometheus metrics per client, read from the run's stats at each collection: a pull endpoint for long
runs, and pushes to a Pushgateway while a run goes on and at its end (a group per client, every series
in every push, so nothing of an earlier run survives), bounded so a dead gateway costs seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, push_to_gateway, pushadd_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import sleep

from adcrawler.config import DRY_RUN, scaled, value
from adcrawler.ledger import Result, RunLedger
from adcrawler.logs import log_failure
from adcrawler.stats import RunStats, client_stats, key

logger = logging.getLogger(__name__)

PUSH_INTERVAL = 30.0  # progress pushes while running, real seconds (scaled, at least a second)
PUSH_TIMEOUT = 2.0  # one push: a Pushgateway answers in milliseconds
PUSH_DEADLINE = 5.0  # all the pushes at the end together: the most they delay the end of a run
PUSHES_AT_ONCE = 8


@dataclass(frozen=True)
class Metric:
    name: str  # counters without the _total suffix
    kind: str  # "counter" or "gauge"
    doc: str
    stat: str = ""  # the stat behind a single series; "run" values come from the extension
    label: str = ""  # besides client and slug
    values: tuple[str, ...] = ()  # the label's values, each the stat ``<stat><value>``; empty: from the stats


LAST_SUCCESS = "adcrawler_last_success_timestamp_seconds"  # not pushed when this run could not read it
METRICS = [
    Metric("adcrawler_campaigns", "counter", "Campaigns of the last run, by result", "campaigns_", "result",
           ("seen", "synced", "sync_failed", "recovered", "stored", "flagged", "quarantined", "quarantined_again",
            "resumed", "not_attempted", "duplicate", "conflicting", "beyond_total", "removed", "back",
            "removal_held")),
    Metric("adcrawler_requests_sent", "counter", "API requests sent, retries included", "requests_sent"),
    Metric("adcrawler_responses", "counter", "Answers received, by endpoint and status", "responses/", "status"),
    Metric("adcrawler_retries", "counter", "API requests retried, by reason", "retries/", "reason"),
    Metric("adcrawler_rate_limited", "counter", "429 answers received", "responses_429"),
    Metric("adcrawler_rate_wait_seconds", "counter", "Seconds requests waited for the rate budget",
           "rate_wait_seconds"),
    Metric("adcrawler_token_refreshes", "counter", "Bearer tokens obtained", "token_refreshes"),
    Metric("adcrawler_token_rejected", "counter", "API answers that refused the bearer token", "token_rejected"),
    Metric("adcrawler_token_retries", "counter", "Token requests retried", "token_retries"),
    Metric("adcrawler_rows", "counter", "Campaign rows written, by operation", "rows_", "operation",
           ("inserted", "updated", "unchanged", "quarantined", "spooled")),
    Metric("adcrawler_campaigns_expected", "gauge", "Campaigns the platform announced", "campaigns_expected"),
    Metric("adcrawler_rate_limit_effective", "gauge",
           "Requests per window in force: the platform's stated limit, or what 429s left", "rate_limit_effective"),
    Metric("adcrawler_rate_window_effective_seconds", "gauge", "The window of that limit", "rate_window_effective"),
    Metric("adcrawler_run_duration_seconds", "gauge", "Seconds the client's sync took", "elapsed_seconds"),
    Metric("adcrawler_run_lower_bound_seconds", "gauge", "Least time the rate limit allowed for the requests sent",
           "lower_bound_seconds"),
    Metric("adcrawler_run_outcome", "gauge", "1 for the outcome of the client's run, 0 for the others", "outcome",
           "outcome", tuple(r.value for r in Result)),
    Metric("adcrawler_run_in_progress", "gauge", "1 while a run of the client is going on", "run"),
    Metric("adcrawler_run_start_timestamp_seconds", "gauge", "When the run started", "run"),
    Metric("adcrawler_run_end_timestamp_seconds", "gauge", "When the run ended (0 while it runs)", "run"),
    Metric(LAST_SUCCESS, "gauge",
           "When the client's last successful run ended, from the database (0: never)", "last_success_timestamp"),
    Metric("adcrawler_sync_max_age_seconds", "gauge",
           "How long the client may go without a successful sync before it is stale (ADCRAWLER_SYNC_MAX_AGE)", "run"),
    Metric("adcrawler_push_interval_seconds", "gauge", "Seconds between progress pushes while a run goes on", "run"),
]


def samples(metric: Metric, values: dict[str, Any], run: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """(label values besides client and slug, value) for one client: every series, zeros included."""
    if metric.stat == "run":
        return [((), run[metric.name])]
    if metric.stat == "outcome":
        return [((o,), float(values.get("outcome") == o)) for o in metric.values]
    if metric.values:
        return [((v,), float(values.get(metric.stat + v, 0))) for v in metric.values]
    if metric.label:  # every value the stats hold: responses/list_503 -> (list, 503)
        found = sorted((k[len(metric.stat):], v) for k, v in values.items() if k.startswith(metric.stat))
        return [(tuple(k.rsplit("_", 1)) if metric.label == "status" else (k,), float(v)) for k, v in found]
    return [((), float(values.get(metric.stat, run.get(metric.stat, 0))))]


class StatsMetrics(Collector):
    """The metric families of ``clients`` (client id -> slug), from a stats snapshot at each collection."""

    def __init__(self, snapshot: Any, clients: Any, omit: tuple[str, ...] = ()):
        self.snapshot = snapshot  # () -> (stats, run-wide values)
        self.clients = clients  # () -> {client id: slug}
        self.omit = omit  # names of families left out

    def collect(self) -> Iterator[Any]:
        stats, run = self.snapshot()
        clients = self.clients()
        for metric in (m for m in METRICS if m.name not in self.omit):
            labels = ["client", "slug", *(["endpoint", "status"] if metric.label == "status" else
                                          [metric.label] if metric.label else [])]
            family = (CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily)(
                metric.name, metric.doc, labels=labels)
            for client, slug in clients.items():
                for label_values, number in samples(metric, client_stats(stats, client), run):
                    family.add_metric([client, slug, *label_values], number)
            yield family


class PrometheusMetrics:
    def __init__(self, crawler: Crawler, port: int, pushgateway: str):
        s = crawler.settings
        self.crawler = crawler
        self.port = port
        self.pushgateway = pushgateway
        self.interval = scaled(s, PUSH_INTERVAL, 1.0)
        # Values of the run, not of a stat; the configured budget stands where nothing changed it.
        self.run = {"rate_limit_effective": float(value(s, "ADCRAWLER_RATE_LIMIT")),
                    "rate_window_effective": float(scaled(s, value(s, "ADCRAWLER_RATE_WINDOW"))),
                    "adcrawler_sync_max_age_seconds": value(s, "ADCRAWLER_SYNC_MAX_AGE"),
                    "adcrawler_run_in_progress": 1.0, "adcrawler_push_interval_seconds": self.interval,
                    "adcrawler_run_start_timestamp_seconds": time.time(), "adcrawler_run_end_timestamp_seconds": 0.0}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsMetrics(self.snapshot, self.clients))
        self.server: Any = None
        self.progress: asyncio.Task | None = None
        self.round: asyncio.Future | None = None  # the progress pushes going on
        # Threads of their own: a push stuck on a gateway never holds up a database call.
        self.pool = ThreadPoolExecutor(PUSHES_AT_ONCE, thread_name_prefix="adcrawler-push")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PrometheusMetrics:
        s = crawler.settings
        port, pushgateway = value(s, "ADCRAWLER_METRICS_PORT"), value(s, "ADCRAWLER_PUSHGATEWAY_URL")
        if s.getbool(DRY_RUN):
            pushgateway = ""  # a dry run's figures are not a run's
        if not port and not pushgateway:
            raise NotConfigured
        ext = cls(crawler, port, pushgateway)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)  # after the recorder's
        return ext

    def snapshot(self) -> tuple[dict[str, Any], dict[str, float]]:
        return dict(self.crawler.stats.get_stats()), dict(self.run)  # C-level copies: safe from any thread

    def clients(self, final: bool = False) -> dict[str, str]:
        """The clients this run works for, and those it stopped working for; at the end also those
        it could not start, for a known reason (they push their outcome)."""
        ledger = RunLedger.of(self.crawler)
        return {client: ledger.run(client).client.slug for client in (ledger.reported() if final else ledger.owned())}

    def spider_opened(self, spider: Any) -> None:
        if self.pushgateway:
            self.progress = asyncio.ensure_future(self._push_progress())
            self.progress.add_done_callback(log_failure)
        if not self.port:
            return
        try:
            self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            logger.warning("Metrics endpoint not started: cannot listen on 127.0.0.1:%s (%s); the run goes on",
                           self.port, exc.strerror or exc)
            return
        logger.info("Prometheus metrics at http://127.0.0.1:%d/metrics", self.server.server_port)

    async def _push_progress(self) -> None:
        while True:
            await sleep(self.interval)
            self.round = asyncio.ensure_future(self.push(self.interval))
            failed = await self.round
            if failed:
                RunStats(self.crawler).inc("metrics_progress_push_failed", count=len(failed))
                logger.warning("Progress of %d clients not pushed to the Pushgateway (%s: %s)", len(failed),
                               *next(iter(failed.items())))

    async def spider_closed(self, spider: Any, reason: str) -> None:
        self.run["adcrawler_run_in_progress"] = 0.0
        self.run["adcrawler_run_end_timestamp_seconds"] = time.time()
        if self.progress is not None:
            self.progress.cancel()
        if self.pushgateway:
            end = time.monotonic() + PUSH_DEADLINE
            if self.round is not None:  # a progress push landing after the final one would say "in progress"
                await asyncio.wait([self.round], timeout=PUSH_DEADLINE)
            failed = await self.push(max(0.0, end - time.monotonic()), final=True)
            for client, error in failed.items():
                RunStats(self.crawler).inc("metrics_push_failed", client)
                logger.error("Could not push metrics of client %s to the Pushgateway: %s", client, error,
                             extra={"client": client})
            if failed:
                names = ", ".join(list(failed)[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
                RunLedger.of(self.crawler).notice(f"the metrics of {names} were not pushed")
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    async def push(self, deadline: float, final: bool = False) -> dict[str, str]:
        """Push each running client's group, for at most ``deadline`` seconds in all; returns the
        clients whose push failed or was not done, with why."""
        stats, run = self.snapshot()
        loop = asyncio.get_running_loop()
        pushes = {client: loop.run_in_executor(self.pool, self._push_one, client, slug, stats, run)
                  for client, slug in self.clients(final).items()}
        if pushes:
            await asyncio.wait(pushes.values(), timeout=deadline)
        failed = {}
        for client, push in sorted(pushes.items()):
            if not push.done():
                push.cancel()  # not started yet: it never will be
                failed[client] = "not done within the deadline"
            elif push.result():
                failed[client] = push.result()
        return failed

    def _push_one(self, client: str, slug: str, stats: dict[str, Any], run: dict[str, float]) -> str | None:
        """None when pushed, else why not."""
        # A last success this run never read (the database down at the start) is not pushed: the
        # group's earlier value stays, and only the families pushed are replaced (POST, not PUT).
        known = key("last_success_timestamp", client) in stats
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsMetrics(lambda: (stats, run), lambda: {client: slug},
                                       omit=() if known else (LAST_SUCCESS,)))
        try:
            (push_to_gateway if known else pushadd_to_gateway)(
                self.pushgateway, job="adcrawler", registry=registry, grouping_key={"client": client},
                timeout=PUSH_TIMEOUT)
            return None
        except OSError as exc:
            return str(exc) or type(exc).__name__
