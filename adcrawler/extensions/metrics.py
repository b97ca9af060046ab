"""Prometheus metrics per client, through prometheus-client with a private registry.

The metrics are read from the run's stats at each scrape (one source of truth:
what Prometheus sees is what the stats file says). Two ways out:

- pull: an HTTP endpoint on ``ADCRAWLER_METRICS_HOST:ADCRAWLER_METRICS_PORT``
  for long runs (port 0 = off; a busy port is a warning, not a crash);
- push: at the end of the run, one group per client to the Pushgateway at
  ``ADCRAWLER_PUSHGATEWAY_URL`` (empty = off), for scrapyd batch jobs. It uses
  push-add, so ``adcrawler_last_success_timestamp_seconds`` from an earlier
  successful run survives a failed one and staleness stays measurable.

Settings: ADCRAWLER_METRICS_HOST, ADCRAWLER_METRICS_PORT, ADCRAWLER_PUSHGATEWAY_URL,
ADCRAWLER_PUSHGATEWAY_JOB.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, pushadd_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import run_in_thread

from adcrawler.settings_check import positive_int
from adcrawler.stats import PREFIX

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# stat name -> (metric name, help, extra labels)
CAMPAIGN_RESULTS = ("seen", "synced", "sync_failed", "stored", "resumed", "duplicate")
COUNTERS = {
    "requests_sent": ("adcrawler_requests_sent", "API requests sent, retries included", {}),
    "responses_429": ("adcrawler_rate_limited", "429 answers received", {}),
    "token_refreshes": ("adcrawler_token_refreshes", "Bearer tokens obtained", {}),
    "token_expired": ("adcrawler_token_rejected", "401 answers to a bearer token", {}),
    "rate_wait_seconds": ("adcrawler_rate_wait_seconds", "Seconds requests waited for the rate budget", {}),
    "records_rejected": ("adcrawler_records_rejected", "Records quarantined by validation", {}),
    "rows_spooled": ("adcrawler_rows_spooled", "Rows kept on disk because the database was down", {}),
    **{f"rows_{op}": ("adcrawler_rows", "Campaign rows written, by operation", {"operation": op})
       for op in ("inserted", "updated", "unchanged")},
    **{f"campaigns_{r}": ("adcrawler_campaigns", "Campaigns by result", {"result": r}) for r in CAMPAIGN_RESULTS},
}
GAUGES = {
    "campaigns_expected": ("adcrawler_campaigns_expected", "Campaigns the platform announced for the client"),
    "rate_limit_effective": ("adcrawler_rate_limit_effective", "Per-window limit after 429s lowered it"),
    "elapsed_seconds": ("adcrawler_run_duration_seconds", "Seconds the client's sync took in the last run"),
    "lower_bound_seconds": ("adcrawler_run_lower_bound_seconds", "Least time the rate limit allowed"),
}


def per_client(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``adcrawler/client/<id>/<name>`` keys, grouped by client id."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    head = f"{PREFIX}/client/"
    for key, value in stats.items():
        if key.startswith(head):
            client, _, name = key[len(head):].partition("/")
            out[client][name] = value
    return out


class StatsMetrics(Collector):
    """Builds the metric families from a stats snapshot at each collection."""

    def __init__(self, snapshot, only_client: str | None = None):
        self.snapshot = snapshot  # () -> (stats dict, extra per-client gauges)
        self.only_client = only_client

    def collect(self) -> Iterator[Any]:
        stats, extra = self.snapshot()
        families: dict[str, Any] = {}

        def family(kind, name, doc, labels):
            if name not in families:
                families[name] = kind(name, doc, labels=labels)
            return families[name]

        for client, values in sorted(per_client(stats).items()):
            if self.only_client not in (None, client):
                continue
            for stat, (name, doc, extra_labels) in COUNTERS.items():
                if stat in values:
                    f = family(CounterMetricFamily, name, doc, ["client", *extra_labels])
                    f.add_metric([client, *extra_labels.values()], float(values[stat]))
            for stat, value in values.items():
                kind, _, detail = stat.partition("/")
                if kind == "responses" and detail:
                    endpoint, _, status = detail.rpartition("_")
                    family(CounterMetricFamily, "adcrawler_responses", "Answers received by endpoint and status",
                           ["client", "endpoint", "status"]).add_metric([client, endpoint, status], float(value))
                elif kind == "retries" and detail:
                    family(CounterMetricFamily, "adcrawler_retries", "Requests retried, by reason",
                           ["client", "reason"]).add_metric([client, detail], float(value))
            for stat, (name, doc) in GAUGES.items():
                if stat in values:
                    family(GaugeMetricFamily, name, doc, ["client"]).add_metric([client], float(values[stat]))
            if "outcome" in values:
                family(GaugeMetricFamily, "adcrawler_run_outcome", "1 for the outcome of the client's last run",
                       ["client", "outcome"]).add_metric([client, values["outcome"]], 1.0)
            for name, (doc, value) in extra.get(client, {}).items():
                family(GaugeMetricFamily, name, doc, ["client"]).add_metric([client], value)
        yield from families.values()


class PrometheusMetrics:
    def __init__(self, crawler: Crawler, host: str, port: int, pushgateway: str, job: str):
        self.crawler = crawler
        self.host = host
        self.port = port
        self.pushgateway = pushgateway
        self.job = job
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsMetrics(self.snapshot))
        self.server = None
        self.started = time.time()
        self.finished: dict[str, float] = {}
        self.in_progress = True

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "PrometheusMetrics":
        s = crawler.settings
        port = positive_int(s, "ADCRAWLER_METRICS_PORT", allow_zero=True)
        pushgateway = s.get("ADCRAWLER_PUSHGATEWAY_URL") or ""
        if not port and not pushgateway:
            raise NotConfigured
        ext = cls(crawler, s.get("ADCRAWLER_METRICS_HOST"), port, pushgateway, s.get("ADCRAWLER_PUSHGATEWAY_JOB"))
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        return ext

    def snapshot(self) -> tuple[dict[str, Any], dict[str, dict[str, tuple[str, float]]]]:
        stats = dict(self.crawler.stats.get_stats())  # one C-level copy: safe from the server thread
        extra: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
        for client, values in per_client(stats).items():
            extra[client]["adcrawler_run_in_progress"] = ("1 while a run of the client is going on",
                                                          1.0 if self.in_progress else 0.0)
            extra[client]["adcrawler_run_start_timestamp_seconds"] = ("When the run started", self.started)
            if values.get("outcome") == "succeeded" and client in self.finished:
                extra[client]["adcrawler_last_success_timestamp_seconds"] = (
                    "When the client's last successful sync finished", self.finished[client])
        return stats, extra

    def spider_opened(self, spider: Any) -> None:
        # Connected now so that it runs after the spider has settled outcomes.
        self.crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        if not self.port:
            return
        try:
            self.server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            logger.warning("Metrics endpoint not started: cannot listen on %s:%s (%s); the run goes on",
                           self.host, self.port, exc.strerror or exc)
            return
        logger.info("Prometheus metrics at http://%s:%d/metrics", self.host, self.server.server_port)

    async def spider_closed(self, spider: Any, reason: str) -> None:
        self.in_progress = False
        now = time.time()
        self.finished = {client: now for client in getattr(spider, "clients", {})}
        if self.pushgateway:
            await run_in_thread(self.push)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def push(self) -> None:
        stats, _ = self.snapshot()
        for client in per_client(stats):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(StatsMetrics(self.snapshot, only_client=client))
            try:
                pushadd_to_gateway(self.pushgateway, job=self.job, registry=registry,
                                   grouping_key={"client": client}, timeout=10)
            except OSError as exc:
                logger.error("Could not push metrics of client %s to the Pushgateway: %s", client, exc)
