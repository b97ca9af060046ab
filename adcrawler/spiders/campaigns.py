"""The ``campaigns`` spider: list every campaign of each client and sync each one.

``scrapy crawl campaigns -a client=<slug>`` (or ``a,b,c``, or ``all``).

For each client: page through ``GET /api/campaigns`` with the stop rule of
:mod:`adcrawler.pagination`, validate each record (bad ones are quarantined),
then ``POST /api/campaigns/{id}/sync`` once per distinct campaign and yield one
:class:`~adcrawler.items.CampaignItem` carrying the sync outcome. Tokens, the
rate budget and retries live in the downloader middlewares; a request that
still fails reaches an errback here and is recorded, never dropped.

Settings: ADCRAWLER_API_URL, ADCRAWLER_CLIENTS_FILE, ADCRAWLER_PAGE_SIZE,
ADCRAWLER_TIMEOUT_LIST, ADCRAWLER_TIMEOUT_SYNC, ADCRAWLER_RATE_LIMIT and
ADCRAWLER_RATE_WINDOW (for the lower bound reported per client).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import scrapy
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from adcrawler.clients import Registry
from adcrawler.items import CampaignItem, RejectedRecord
from adcrawler.middlewares import CLIENT, ENDPOINT, EXPECT_JSON
from adcrawler.middlewares.ratebudget import ShuttingDown
from adcrawler.pagination import next_page
from adcrawler.pipelines.store import StorePipeline
from adcrawler.ratelimit import lower_bound_seconds
from adcrawler.settings_check import positive_float, positive_int
from adcrawler.stats import RunStats
from adcrawler.validation import InvalidRecord, validate_campaign

logger = logging.getLogger(__name__)

LIST_PRIORITY = 10  # discover all work before spending budget on syncs


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _reason(failure: Failure) -> str:
    exc = failure.value
    if isinstance(exc, HttpError):
        return f"HTTP {exc.response.status}"
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


class CampaignsSpider(scrapy.Spider):
    name = "campaigns"

    def __init__(self, client: str = "", *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.client_argument = client
        # Campaign ids listed so far, per client. Deliberately not kept in
        # Spider.state: a resumed run must list again and learn from the
        # database what is done (see adcrawler/jobdir.py).
        self.seen: dict[str, set[str]] = {}
        self.started_at = _now()
        self.last_activity: dict[str, float] = {}

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any) -> "CampaignsSpider":
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.api_url = s.get("ADCRAWLER_API_URL").rstrip("/")
        spider.page_size = positive_int(s, "ADCRAWLER_PAGE_SIZE")
        spider.list_timeout = positive_float(s, "ADCRAWLER_TIMEOUT_LIST")
        spider.sync_timeout = positive_float(s, "ADCRAWLER_TIMEOUT_SYNC")
        registry = Registry.load(s.get("ADCRAWLER_CLIENTS_FILE"))
        # Keyed by the platform client id: that is what requests carry in meta.
        spider.clients = {c.client_id: c for c in registry.select(spider.client_argument)}
        spider.run_stats = RunStats(crawler)
        spider.rate_limit = positive_int(s, "ADCRAWLER_RATE_LIMIT")
        spider.rate_window = positive_float(s, "ADCRAWLER_RATE_WINDOW")
        return spider

    def closed(self, reason: str) -> None:
        """Settle each client's outcome and timing before the run is recorded.

        Runs before the pipeline's and the stats dump's own ``spider_closed``
        handlers (the spider connects first), after the last batch was stored.
        """
        elapsed = (_now() - self.started_at).total_seconds()
        for client in self.clients:
            self.run_stats.set("outcome", self.run_stats.outcome(client, complete=reason == "finished"), client)
            self.run_stats.set("elapsed_seconds", round(self.last_activity.get(client, elapsed), 3), client)
            self.run_stats.set("lower_bound_seconds", round(lower_bound_seconds(
                self.run_stats.get("requests_sent", client), self.rate_limit, self.rate_window), 3), client)

    def _touch(self, client: str) -> None:
        self.last_activity[client] = (_now() - self.started_at).total_seconds()

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for client in self.clients.values():
            logger.info("Client %s (%s): starting", client.slug, client.client_id, extra={"client": client.client_id})
            yield self.list_request(client.client_id, 1)

    def _meta(self, client: str, endpoint: str, timeout: float) -> dict[str, Any]:
        return {CLIENT: client, ENDPOINT: endpoint, EXPECT_JSON: True, "download_slot": f"client:{client}",
                "download_timeout": timeout}

    def list_request(self, client: str, page: int) -> scrapy.Request:
        query = urlencode({"page": page, "limit": self.page_size})
        return scrapy.Request(
            f"{self.api_url}/api/campaigns?{query}", headers={"X-Client-ID": client, "Accept": "application/json"},
            meta=self._meta(client, "list", self.list_timeout), cb_kwargs={"client": client, "page": page},
            callback=self.parse_list, errback=self.list_failed, priority=LIST_PRIORITY, dont_filter=True,
        )

    def sync_request(self, client: str, campaign: dict[str, Any]) -> scrapy.Request:
        return scrapy.Request(
            f"{self.api_url}/api/campaigns/{campaign['campaign_id']}/sync", method="POST",
            headers={"X-Client-ID": client, "Accept": "application/json"},
            meta=self._meta(client, "sync", self.sync_timeout), cb_kwargs={"client": client, "campaign": campaign},
            callback=self.parse_sync, errback=self.sync_failed,
        )

    def parse_list(self, response: Response, client: str, page: int) -> Iterator[Any]:
        try:
            payload = json.loads(response.body)
            records = payload["data"]
            pagination = payload.get("pagination") or {}
            if not isinstance(records, list) or not isinstance(pagination, dict):
                raise ValueError("data is not a list")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Not JSON even after the retry middleware's attempts, or JSON of the wrong shape.
            self._list_given_up(client, page, f"page {page} is not a valid campaign list: {exc}")
            return
        self.run_stats.inc("list_pages", client)
        if page == 1 and _int(pagination.get("total"), None):
            self.run_stats.set("campaigns_expected", pagination["total"], client)
        seen = self.seen.setdefault(client, set())
        done = self._done(client)
        fetched_at = _now()
        for record in records:
            try:
                campaign = validate_campaign(record)
            except InvalidRecord as exc:
                self.run_stats.inc("records_rejected", client)
                logger.warning("Client %s: rejected a record on page %d: %s", client, page, exc,
                               extra={"client": client})
                yield RejectedRecord(client_id=client, reason=str(exc), seen_at=fetched_at,
                                     payload=json.dumps(record, ensure_ascii=False, default=str))
                continue
            if campaign.campaign_id in seen:
                self.run_stats.inc("campaigns_duplicate", client)
                continue
            seen.add(campaign.campaign_id)
            self.run_stats.inc("campaigns_seen", client)
            if campaign.campaign_id in done:
                self.run_stats.inc("campaigns_resumed", client)  # stored before the interruption
                continue
            yield self.sync_request(client, {**vars(campaign), "fetched_at": fetched_at})
        after = next_page(page, _int(pagination.get("limit"), self.page_size), len(records), len(seen),
                          _int(pagination.get("total"), None), _bool(pagination.get("has_more")))
        if after is None:
            logger.info("Client %s: list complete, %d campaigns on %d page(s)", client, len(seen), page,
                        extra={"client": client})
        else:
            yield self.list_request(client, after)

    def _done(self, client: str) -> set[str]:
        """Campaigns an interrupted attempt of this run already stored as synced."""
        store = self.crawler.get_item_pipeline(StorePipeline)
        return store.done.get(client, set()) if store else set()

    def list_failed(self, failure: Failure) -> None:
        kwargs = failure.request.cb_kwargs
        self._list_given_up(kwargs["client"], kwargs["page"], _reason(failure))

    def _list_given_up(self, client: str, page: int, reason: str) -> None:
        self.run_stats.inc("list_failed", client)
        logger.error("Client %s: gave up on list page %d (%s); campaigns after it are not synced",
                     client, page, reason, extra={"client": client})

    def parse_sync(self, response: Response, client: str, campaign: dict[str, Any]) -> Iterator[CampaignItem]:
        try:
            body = json.loads(response.body)
            ok = body.get("success") is True and body.get("campaign_id") == campaign["campaign_id"]
            synced_at = datetime.fromisoformat(str(body.get("synced_at")).replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            ok, synced_at = False, None
        if not ok:
            yield self._item(client, campaign, "failed", error="sync answer was not a success")
            return
        self.run_stats.inc("campaigns_synced", client)
        yield self._item(client, campaign, "synced", synced_at=synced_at)

    def sync_failed(self, failure: Failure) -> Iterator[CampaignItem]:
        kwargs = failure.request.cb_kwargs
        if failure.check(ShuttingDown):
            # Never attempted: nothing to record; a resumed run will sync it.
            self.run_stats.inc("campaigns_not_attempted", kwargs["client"])
            return
        yield self._item(kwargs["client"], kwargs["campaign"], "failed", error=_reason(failure))

    def _item(self, client: str, campaign: dict[str, Any], status: str,
              synced_at: datetime | None = None, error: str | None = None) -> CampaignItem:
        self._touch(client)
        if status == "failed":
            self.run_stats.inc("campaigns_sync_failed", client)
            logger.error("Client %s: sync of %s failed: %s", client, campaign["campaign_id"], error,
                         extra={"client": client})
        return CampaignItem(client_id=client, sync_status=status, synced_at=synced_at, sync_error=error,
                            **campaign)


def _int(value: Any, default: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
