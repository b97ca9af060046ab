"""Every ``adcrawler/...`` stat key, declared once: a run total (``adcrawler/<name>``) and per client
(``adcrawler/client/<client_id>/<name>``), a counter maybe split by a reason (``<name>/<reason>``).
:class:`RunStats` refuses an undeclared name, so a typo fails the first test that reaches it."""

from __future__ import annotations

from typing import Any

PREFIX = "adcrawler"

COUNTERS = {
    "campaigns_seen": "distinct campaigns listed (quarantined records included)",
    "campaigns_synced": "campaigns whose sync call succeeded (a quarantined campaign with a usable id included)",
    "campaigns_sync_failed": "campaigns whose sync still failed after every pass",
    "campaigns_recovered": "campaigns synced on a later pass after their retries had run out",
    "campaigns_stored": "distinct campaign rows written (inserted, updated or unchanged)",
    "campaigns_flagged": "campaigns stored with at least one data-quality flag",
    "flags": "per flag (`flags/<flag>`): campaigns stored with that flag",
    "campaigns_quarantined": "records kept in quarantine: refused by validation or by the database",
    "campaigns_quarantined_again": "quarantined for the reason an earlier run gave (the same campaign or payload): "
                                   "counted, not alerted on",
    "records_at_parser_limit": "records past a limit of the JSON parser (nesting, digits): read record by record "
                               "and quarantined as sent",
    "campaigns_resumed": "campaigns skipped because an interrupted attempt of this run (or a run it continues: "
                         "`-a resume`) stored them as synced",
    "campaigns_not_attempted": "campaigns listed but not synced because the crawl stopped first",
    "campaigns_duplicate": "records listed again on another page (synced once)",
    "campaigns_conflicting": "campaigns listed again with other contents (the list moved while it was read): "
                             "the later version kept",
    "campaigns_beyond_total": "records past the announced total (the platform's total is wrong): kept",
    "campaigns_removed": "campaigns an earlier complete listing had and this complete listing has not: marked "
                         "removed (`removed_at`), kept with their history",
    "campaigns_back": "campaigns marked removed by an earlier run and listed again: unmarked",
    "fields_new": "top-level record fields the campaigns do not model, new since the last complete listing "
                  "(said once; kept in raw)",
    "fields_vanished": "fields every record had at the last complete listing and none has now",
    "campaigns_removal_held": "removals held back because the listing shrank by more than "
                              "`ADCRAWLER_REMOVAL_GUARD` (the client is partial until confirmed)",
    "listings_truncated": "listings stopped by `ADCRAWLER_MAX_CAMPAIGNS` with more to list (the client is partial)",
    "list_pages": "list pages parsed",
    "list_failed": "list pages given up on",
    "sync_passes": "extra passes over failed syncs",
    "auth_failed": "clients that could not authenticate",
    "clients_interrupted": "clients the run stopped working for midway (lock lost, nowhere to store rows)",
    "metrics_push_failed": "clients whose metrics could not be pushed to the Pushgateway at the end of the run",
    "metrics_progress_push_failed": "progress pushes (one per running client every 30 s) that failed",
    "requests_sent": "API requests sent (list and sync, retries included)",
    "responses": "answers received; per endpoint and status (`responses/<endpoint>_<status>`), retried ones included",
    "retries": "API requests retried, 429s and refused tokens included; per reason (`retries/<reason>`: "
               "`http_503`, `http_429`, `http_401`, `DownloadTimeoutError`, ...)",
    "responses_429": "rate-limited answers received: 429s, and 403s or 400s with Retry-After or a rate-limit "
                     "message (a secondary limit, as GitHub answers it)",
    "rate_signals_malformed": "rate-limit headers that could not be read, ignored; per header "
                              "(`rate_signals_malformed/<header>`)",
    "rate_wait_seconds": "seconds requests waited in the scheduler for the rate budget, summed",
    "token_refreshes": "bearer tokens obtained (the first one included)",
    "token_rejected": "API answers that refused the bearer token (401)",
    "token_retries": "token requests retried; per reason (`token_retries/<reason>`)",
    "outages": "times the platform failed five requests in a row: one request at a time went until it answered",
    "platform_unavailable": "clients given up because their platform answered nothing for ADCRAWLER_OUTAGE_LIMIT",
    "redirects_refused": "requests not sent because a redirect pointed outside the platform's origin",
    "rows_inserted": "campaign rows inserted",
    "rows_updated": "campaign rows updated",
    "rows_unchanged": "campaign rows already up to date (not rewritten)",
    "rows_quarantined": "rows the database refused (quarantined with its reason)",
    "rows_spooled": "rows written to the spool file because the database was unreachable",
    "db_batches": "batches committed",
    "history_pruned": "history rows (campaign_metrics) older than `ADCRAWLER_KEEP_DAYS` removed after the run",
    "runs_pruned": "run records (sync_runs) older than `ADCRAWLER_KEEP_DAYS` removed after the run",
    "prune_failed": "clients whose old history could not be removed (tried again by the next run)",
    "journal_failed": "job directories whose journal could not be written (a full disk): the run went on "
                      "without it (total only)",
    "db_retries": "batch writes retried after the database was unreachable; per reason (`db_retries/<reason>`)",
}
FINAL = {
    "run_id": "the run's id (total only)",
    "campaigns_expected": "campaigns the platform announced (the list's `total`)",
    "outcome": "`succeeded`, `partial`, `failed`, `skipped` or `interrupted` (see the outcomes)",
    "outcome_reasons": "why the outcome is not `succeeded`, as the last log line says it",
    "auth_failure": "why the client could not authenticate",
    "locked": "1 when another run held the client's lock (the client was skipped)",
    "rate_limit_effective": "the limit in force at the end: what the platform's headers said, or what 429s "
                            "left (absent: the configured one throughout)",
    "rate_window_effective": "the window of that limit, in seconds (absent: the configured one)",
    "elapsed_seconds": "seconds from the client's start (its lock taken) to its last answer",
    "last_latency_seconds": "latency of the client's last answer",
    "lower_bound_seconds": "least time the rate limit allows for the requests sent: "
                           "(⌈requests / limit⌉ − 1) × window + the last answer's latency",
    "last_success_timestamp": "Unix time of the client's last successful run (from the database)",
}


DECLARED = COUNTERS.keys() | FINAL.keys()


class UndeclaredStat(KeyError):
    """A stat name that is not declared in :mod:`adcrawler.stats`."""


def key(name: str, client: str | None = None) -> str:
    return f"{PREFIX}/client/{client}/{name}" if client else f"{PREFIX}/{name}"


class RunStats:
    """Our keys on Scrapy's stats collector: given the collector, or the crawler (whose collector
    is looked up at each use: spiders are built before the crawler has one)."""

    def __init__(self, source: Any):
        self._source = source

    @property
    def stats(self) -> Any:
        return self._source if hasattr(self._source, "inc_value") else self._source.stats

    def inc(self, name: str, client: str | None = None, count: float = 1, reason: str | None = None) -> None:
        """Add ``count`` to the total and the client's counter, and to ``<name>/<reason>`` too."""
        _declared(name, COUNTERS)
        for full in (name, f"{name}/{reason}") if reason else (name,):
            self.stats.inc_value(key(full), count)
            if client:
                self.stats.inc_value(key(full, client), count)

    def set(self, name: str, value: Any, client: str | None = None) -> None:
        _declared(name, DECLARED)
        self.stats.set_value(key(name, client), value)

    def get(self, name: str, client: str | None = None, default: Any = 0) -> Any:
        _declared(name, DECLARED)
        return self.stats.get_value(key(name, client), default)


def _declared(name: str, names: Any) -> None:
    if name not in names:
        raise UndeclaredStat(f"stat {name!r} is not declared in adcrawler.stats")


def client_stats(stats: dict[str, Any], client: str) -> dict[str, Any]:
    """The ``adcrawler/client/<client>/...`` values of a stats dict, by name."""
    head = key("", client)
    return {name[len(head):]: v for name, v in stats.items() if name.startswith(head)}

