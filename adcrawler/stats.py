"""Every ``adcrawler/...`` stat key is written here and nowhere else.

Each counter exists as a run total (``adcrawler/<name>``) and per client
(``adcrawler/client/<client_id>/<name>``). The README lists every key.
"""

from __future__ import annotations

from typing import Any

PREFIX = "adcrawler"

# Counters (name -> meaning); the README table is generated from this list.
COUNTERS = {
    "campaigns_seen": "distinct valid campaigns listed",
    "campaigns_synced": "campaigns whose sync call succeeded",
    "campaigns_sync_failed": "campaigns whose sync call failed after all retries",
    "campaigns_stored": "campaign rows written (inserted, updated or unchanged)",
    "campaigns_resumed": "campaigns skipped because an interrupted attempt of this run stored them",
    "campaigns_not_attempted": "campaigns not synced because the crawl was stopped (SIGTERM) first",
    "campaigns_duplicate": "campaigns listed again on a later page (skipped)",
    "records_rejected": "records that failed validation (quarantined)",
    "list_pages": "list pages parsed",
    "list_failed": "list pages given up on (the client's list is incomplete)",
    "auth_failed": "clients that could not authenticate (credentials refused, "
                   "or the token endpoint down after all retries)",
    "requests_sent": "API requests sent (list and sync, retries included)",
    "retries": "requests retried after a 5xx, timeout, connection error or bad page",
    "responses_429": "429 answers received",
    "rate_wait_seconds": "seconds requests waited for the rate budget",
    "token_refreshes": "bearer tokens obtained (first one included)",
    "token_expired": "401 Token expired answers received",
    "rows_inserted": "campaign rows inserted",
    "rows_updated": "campaign rows updated",
    "rows_unchanged": "campaign rows already up to date (not rewritten)",
    "db_batches": "batches written",
    "db_retries": "batch writes retried after a database error",
    "rows_spooled": "rows written to the spool file because the database was down",
}
# Per client, ``responses/<endpoint>_<status>`` counts every answer the
# downloader received (retried ones included); ``errors/<endpoint>_<exception>``
# every request that got no answer (timeouts, refused connections).
# Values set during or at the end of the run, per client.
FINAL = {
    "campaigns_expected": "campaigns the platform announced (the list's total)",
    "rate_limit_effective": "the client's per-window limit after 429s lowered it (absent: never lowered)",
    "outcome": "succeeded, partial or failed (see README)",
    "elapsed_seconds": "seconds from the start of the run to the client's last campaign",
    "lower_bound_seconds": "least time the rate limit allows for the requests sent",
}


def key(name: str, client: str | None = None) -> str:
    return f"{PREFIX}/client/{client}/{name}" if client else f"{PREFIX}/{name}"


def reason_key(name: str, reason: str, client: str | None = None) -> str:
    return key(f"{name}/{reason}", client)


class RunStats:
    """Thin façade over Scrapy's stats collector for our keys.

    Takes the collector or the crawler; a crawler's collector is looked up at
    each use, since spiders are built before the crawler has one.
    """

    def __init__(self, source: Any):
        self._source = source

    @property
    def stats(self) -> Any:
        return self._source if hasattr(self._source, "inc_value") else self._source.stats

    def inc(self, name: str, client: str | None = None, count: float = 1, reason: str | None = None) -> None:
        """Add ``count`` to the total and the client's counter (and, with a
        ``reason``, to ``<name>/<reason>`` as well)."""
        for full in (name, f"{name}/{reason}") if reason else (name,):
            self.stats.inc_value(key(full), count)
            if client:
                self.stats.inc_value(key(full, client), count)

    def set(self, name: str, value: Any, client: str | None = None) -> None:
        self.stats.set_value(key(name, client), value)

    def get(self, name: str, client: str | None = None, default: Any = 0) -> Any:
        return self.stats.get_value(key(name, client), default)

    def outcome(self, client: str, complete: bool = True) -> str:
        """succeeded: the whole list read, every campaign synced and stored;
        failed: nothing usable (no auth, no list); partial: anything between.
        ``complete`` is False when the run was cut short."""
        g = lambda name: self.get(name, client)  # noqa: E731
        seen = g("campaigns_seen")
        if g("auth_failed") or (not seen and (g("list_failed") or not complete)):
            return "failed"
        done = seen - g("campaigns_resumed")
        if (not complete or g("list_failed") or g("records_rejected") or g("rows_spooled")
                or g("campaigns_synced") != done or g("campaigns_stored") != done):
            return "partial"
        return "succeeded"
