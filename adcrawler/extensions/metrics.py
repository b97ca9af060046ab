"""Prometheus metrics per client, read from the run's stats at each collection (what Prometheus
sees is what the stats file says), through prometheus-client with a private registry.

Two ways out: a pull endpoint on 127.0.0.1:``ADCRAWLER_METRICS_PORT`` for long runs, and pushes to
``ADCRAWLER_PUSHGATEWAY_URL``, one group per client, while the run goes on (in progress: 1) and at
its end, for scrapyd batch jobs. A job holds hundreds of clients: pushes go a few at a time, each
bounded, those at the end bounded in all. Every series is in every push, zeros included, and a push
replaces the client's group, so nothing of an earlier run survives; the last success comes from the
database at the start. A skipped client pushes nothing: its group belongs to the run doing the work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import run_in_thread, sleep

from adcrawler.config import DRY_RUN, scaled, value
from adcrawler.ledger import Result, RunLedger
from adcrawler.logs import log_failure
from adcrawler.stats import RunStats, client_stats, clients_in

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

CAMPAIGN_RESULTS = ("seen", "synced", "sync_failed", "recovered", "stored", "flagged", "quarantined",
                    "quarantined_again", "resumed", "not_attempted", "duplicate", "beyond_total")
ROW_OPERATIONS = ("inserted", "updated", "unchanged", "quarantined", "spooled")


@dataclass(frozen=True)
class PushPolicy:
    interval: float = 30.0  # progress pushes while running, real seconds (scaled, at least a second)
    timeout: float = 2.0  # one push: a Pushgateway answers in milliseconds
    deadline: float = 5.0  # all the pushes at the end together: how long they may delay the end
    concurrency: int = 8  # pushes at once


@dataclass(frozen=True)
class Metric:
    name: str  # counters without the _total suffix
    kind: str  # "counter" or "gauge"
    doc: str
    labels: tuple[str, ...] = ()  # besides client
    values: tuple[str, ...] = ()  # fixed values of a single label; empty = whatever the stats hold


METRICS = [
    Metric("adcrawler_campaigns", "counter", "Campaigns of the last run, by result", ("result",), CAMPAIGN_RESULTS),
    Metric("adcrawler_requests_sent", "counter", "API requests sent, retries included"),
    Metric("adcrawler_responses", "counter", "Answers received, by endpoint and status", ("endpoint", "status")),
    Metric("adcrawler_retries", "counter", "API requests retried, by reason", ("reason",)),
    Metric("adcrawler_rate_limited", "counter", "429 answers received"),
    Metric("adcrawler_rate_wait_seconds", "counter", "Seconds requests waited for the rate budget"),
    Metric("adcrawler_token_refreshes", "counter", "Bearer tokens obtained"),
    Metric("adcrawler_token_rejected", "counter", "API answers that refused the bearer token"),
    Metric("adcrawler_token_retries", "counter", "Token requests retried"),
    Metric("adcrawler_rows", "counter", "Campaign rows written, by operation", ("operation",), ROW_OPERATIONS),
    Metric("adcrawler_campaigns_expected", "gauge", "Campaigns the platform announced"),
    Metric("adcrawler_rate_limit_effective", "gauge",
           "Requests per window in force: the platform's stated limit, or what 429s left"),
    Metric("adcrawler_rate_window_effective_seconds", "gauge", "The window of that limit"),
    Metric("adcrawler_run_duration_seconds", "gauge", "Seconds the client's sync took"),
    Metric("adcrawler_run_lower_bound_seconds", "gauge", "Least time the rate limit allowed for the requests sent"),
    Metric("adcrawler_run_outcome", "gauge", "1 for the outcome of the client's run, 0 for the others",
           ("outcome",), tuple(r.value for r in Result)),
    Metric("adcrawler_run_in_progress", "gauge", "1 while a run of the client is going on"),
    Metric("adcrawler_run_start_timestamp_seconds", "gauge", "When the run started"),
    Metric("adcrawler_run_end_timestamp_seconds", "gauge", "When the run ended (0 while it runs)"),
    Metric("adcrawler_last_success_timestamp_seconds", "gauge",
           "When the client's last successful run ended (0: never)"),
    Metric("adcrawler_sync_max_age_seconds", "gauge",
           "How long the client may go without a successful sync before it is stale (ADCRAWLER_SYNC_MAX_AGE)"),
    Metric("adcrawler_push_interval_seconds", "gauge",
           "Seconds between progress pushes while a run goes on (0: pushed at the end only)"),
]
# Stat name behind each single-valued metric.
_STAT = {
    "adcrawler_requests_sent": "requests_sent", "adcrawler_rate_limited": "responses_429",
    "adcrawler_rate_wait_seconds": "rate_wait_seconds", "adcrawler_token_refreshes": "token_refreshes",
    "adcrawler_token_rejected": "token_rejected", "adcrawler_token_retries": "token_retries",
    "adcrawler_campaigns_expected": "campaigns_expected", "adcrawler_run_duration_seconds": "elapsed_seconds",
    "adcrawler_run_lower_bound_seconds": "lower_bound_seconds",
    "adcrawler_last_success_timestamp_seconds": "last_success_timestamp",
}


def samples(metric: Metric, values: dict[str, Any], run: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """(label values besides client, value) for one client: every documented series, zeros included."""
    name = metric.name
    if name == "adcrawler_campaigns":
        return [((r,), float(values.get(f"campaigns_{r}", 0))) for r in metric.values]
    if name == "adcrawler_rows":
        return [((op,), float(values.get(f"rows_{op}", 0))) for op in metric.values]
    if name == "adcrawler_responses":
        return [(tuple(k[len("responses/"):].rsplit("_", 1)), float(v)) for k, v in sorted(values.items())
                if k.startswith("responses/")]
    if name == "adcrawler_retries":
        return [((k[len("retries/"):],), float(v)) for k, v in sorted(values.items()) if k.startswith("retries/")]
    if name == "adcrawler_run_outcome":
        return [((o,), 1.0 if values.get("outcome") == o else 0.0) for o in metric.values]
    if name == "adcrawler_rate_limit_effective":
        return [((), float(values.get("rate_limit_effective", run["rate_limit"])))]
    if name == "adcrawler_rate_window_effective_seconds":
        return [((), float(values.get("rate_window_effective", run["rate_window"])))]
    if name in run:
        return [((), float(run[name]))]
    return [((), float(values.get(_STAT[name], 0)))]


class StatsMetrics(Collector):
    """Builds the metric families from a stats snapshot at each collection."""

    def __init__(self, snapshot: Callable[[], tuple[dict[str, Any], dict[str, float]]],
                 clients: Callable[[dict[str, Any]], list[str]] = clients_in):
        self.snapshot = snapshot  # () -> (stats, run-wide values)
        self.clients = clients

    def collect(self) -> Iterator[Any]:
        stats, run = self.snapshot()
        clients = self.clients(stats)
        for metric in METRICS:
            cls = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = cls(metric.name, metric.doc, labels=["client", *metric.labels])
            for client in clients:
                for labels, number in samples(metric, client_stats(stats, client), run):
                    family.add_metric([client, *labels], number)
            yield family


class PrometheusMetrics:
    def __init__(self, crawler: Crawler, host: str, port: int, pushgateway: str, job: str, rate_limit: int,
                 rate_window: float = 60.0, push: PushPolicy = PushPolicy(), max_age: float = 43200.0):
        self.crawler = crawler
        self.host = host
        self.port = port
        self.pushgateway = pushgateway
        self.job = job
        self.policy = push
        self.run = {"rate_limit": float(rate_limit), "rate_window": float(rate_window),
                    "adcrawler_run_in_progress": 1.0, "adcrawler_sync_max_age_seconds": max_age,
                    "adcrawler_push_interval_seconds": push.interval,
                    "adcrawler_run_start_timestamp_seconds": time.time(), "adcrawler_run_end_timestamp_seconds": 0.0}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsMetrics(self.snapshot, self._running_clients))
        self.server = None
        self.progress: asyncio.Task | None = None
        # One push call at a time; at the end, progress pushers stop taking work so that
        # no progress push lands after the final one (its "in progress: 1" would stay).
        self.pushing = threading.Lock()
        self.closing = False
        self.in_flight: list[threading.Thread] = []  # the last call's pushers

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "PrometheusMetrics":
        s = crawler.settings
        port, pushgateway = value(s, "ADCRAWLER_METRICS_PORT"), value(s, "ADCRAWLER_PUSHGATEWAY_URL")
        if s.getbool(DRY_RUN):
            pushgateway = ""  # a dry run's figures are not a run's
        if not port and not pushgateway:
            raise NotConfigured
        policy = PushPolicy(interval=scaled(s, PushPolicy.interval, 1.0))
        ext = cls(crawler, "127.0.0.1", port, pushgateway, "adcrawler", value(s, "ADCRAWLER_RATE_LIMIT"),
                  scaled(s, value(s, "ADCRAWLER_RATE_WINDOW")), policy, value(s, "ADCRAWLER_SYNC_MAX_AGE"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        # After the spider and the run records (see EXTENSIONS in settings.py).
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def snapshot(self) -> tuple[dict[str, Any], dict[str, float]]:
        return dict(self.crawler.stats.get_stats()), dict(self.run)  # C-level copies: safe from the server thread

    def _running_clients(self, stats: dict[str, Any]) -> list[str]:
        return RunLedger.of(self.crawler).held()

    def spider_opened(self, spider: Any) -> None:
        if self.pushgateway:
            if self.policy.interval:
                self.progress = asyncio.ensure_future(self._push_progress())
                self.progress.add_done_callback(log_failure)
        if not self.port:
            return
        try:
            self.server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            logger.warning("Metrics endpoint not started: cannot listen on %s:%s (%s); the run goes on",
                           self.host, self.port, exc.strerror or exc)
            return
        logger.info("Prometheus metrics at http://%s:%d/metrics", self.host, self.server.server_port)

    async def _push_progress(self) -> None:
        """Every ADCRAWLER_PUSH_INTERVAL: the running clients' figures so far (in progress: 1)."""
        while True:
            await sleep(self.policy.interval)
            stats, run = self.snapshot()
            failed = await run_in_thread(self.push, stats, run, self.policy.interval)
            if failed:
                RunStats(self.crawler).inc("metrics_progress_push_failed", count=len(failed))

    async def spider_closed(self, spider: Any, reason: str) -> None:
        self.run["adcrawler_run_in_progress"] = 0.0
        self.run["adcrawler_run_end_timestamp_seconds"] = time.time()
        self.closing = True
        if self.progress is not None:
            self.progress.cancel()
        if self.pushgateway:
            stats, run = self.snapshot()  # before the first await: see the class docstring of RunRecords
            failed = await run_in_thread(self.push, stats, run, self.policy.deadline)
            for client in failed:
                RunStats(self.crawler).inc("metrics_push_failed", client)
            if failed:
                names = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
                RunLedger.of(self.crawler).notice(f"the metrics of {names} were not pushed")
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def push(self, stats: dict[str, Any], run: dict[str, float], deadline: float) -> list[str]:
        """Push each running client's group, ``concurrency`` at a time, for at most ``deadline``
        seconds in all (the pushes of an earlier call still going count against it: a group must
        not be overwritten by older figures); returns the clients whose push failed or never ran.

        The pushers are daemon threads: one stuck on a gateway that never answers must not hold
        the process at exit for its timeout (a ThreadPoolExecutor's threads are joined at exit)."""
        end = time.monotonic() + deadline
        final = not run["adcrawler_run_in_progress"]
        clients = self._running_clients(stats)
        if not self.pushing.acquire(timeout=deadline):
            if final:
                logger.error("Could not push the metrics of %d clients: an earlier push to the Pushgateway at %s "
                             "was still going after %.0f s", len(clients), self.pushgateway, deadline)
            return sorted(clients)
        try:
            return self._push_all(clients, stats, run, end, final)
        finally:
            self.pushing.release()

    def _push_all(self, clients: list[str], stats: dict[str, Any], run: dict[str, float], end: float,
                  final: bool) -> list[str]:
        for thread in self.in_flight:
            thread.join(max(0.0, end - time.monotonic()))
        work: queue.SimpleQueue[str] = queue.SimpleQueue()
        for client in clients:
            work.put(client)
        errors: dict[str, str | None] = {}

        def pusher() -> None:
            while time.monotonic() < end and (final or not self.closing):
                try:
                    client = work.get_nowait()
                except queue.Empty:
                    return
                errors[client] = self._push_one(client, stats, run)

        self.in_flight = [threading.Thread(target=pusher, name="adcrawler-push", daemon=True)
                          for _ in range(min(self.policy.concurrency, len(clients)))]
        for thread in self.in_flight:
            thread.start()
        for thread in self.in_flight:
            thread.join(max(0.0, end - time.monotonic()))
        outcome = {client: errors[client] if client in errors else "not done within the deadline"
                   for client in clients}
        failed = sorted(client for client, error in outcome.items() if error)
        if failed and final:
            for client in failed:
                logger.error("Could not push metrics of client %s to the Pushgateway: %s", client, outcome[client],
                             extra={"client": client})
        elif failed and not self.closing:  # every interval: one line, not one per client
            logger.warning("Progress of %d of %d clients not pushed to the Pushgateway (%s: %s)", len(failed),
                           len(clients), failed[0], outcome[failed[0]])
        return failed

    def _push_one(self, client: str, stats: dict[str, Any], run: dict[str, float]) -> str | None:
        """None when pushed, else why not."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsMetrics(lambda: (stats, run), lambda _, c=client: [c]))
        try:
            push_to_gateway(self.pushgateway, job=self.job, registry=registry,
                            grouping_key={"client": client}, timeout=self.policy.timeout)
            return None
        except OSError as exc:
            return str(exc) or type(exc).__name__
