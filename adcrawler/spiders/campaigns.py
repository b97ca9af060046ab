"""The ``campaigns`` spider: list every campaign of each client and sync each one.

``scrapy crawl campaigns -a client=<slug>`` (or ``a,b,c``, or ``all``).

For each client: page through ``GET /api/campaigns`` (:mod:`adcrawler.pagination`
decides what to keep and when to stop), turn each record into a campaign or a
quarantined record (:mod:`adcrawler.validation`), then
``POST /api/campaigns/{id}/sync`` once per distinct usable id (a quarantined
campaign is synced too: only our copy of it could not be stored) and yield one
:class:`~adcrawler.items.CampaignItem` with the sync's outcome. A sync that
still fails after its retries is stored as failed and tried again in another
pass once the client's first pass is over, up to ``ADCRAWLER_SYNC_PASSES``
passes in all, when the retry policy (:mod:`adcrawler.retrying`) says the
verdict it gave up on is worth it. Tokens, the rate budget and retries live in
the scheduler and the downloader middlewares; a request that still fails
reaches an errback here and is recorded, never dropped.

Each client's listing and sync state is kept in the run ledger
(:mod:`adcrawler.ledger`), which the spider fills with the clients it was asked
for and which settles their outcomes when the crawl closes.

Settings: AD_PLATFORM_API_URL, ADCRAWLER_CLIENTS_FILE, ADCRAWLER_PAGE_SIZE,
ADCRAWLER_TIMEOUT_LIST, ADCRAWLER_TIMEOUT_SYNC, ADCRAWLER_SYNC_PASSES, and the
retry settings read by :class:`~adcrawler.retrying.RetryPolicy`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import scrapy
from scrapy import signals
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from adcrawler.answers import decide_exception, json_body
from adcrawler.clients import Registry
from adcrawler.config import value
from adcrawler.items import CampaignItem, RejectedRecord, usable_id
from adcrawler.ledger import ClientRun, FailedSync, RunLedger
from adcrawler.listpage import NOT_JSON, Entry, Page, read_page
from adcrawler.meta import CLIENT, ENDPOINT, VERDICT
from adcrawler.middlewares.auth import AuthenticationFailed
from adcrawler.retrying import RetryPolicy
from adcrawler.stats import RunStats
from adcrawler.validation import Campaign, InvalidRecord, record_key, validate_campaign

logger = logging.getLogger(__name__)

LIST_PRIORITY = 10  # discover all work before spending budget on syncs


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _usable(cid: object) -> str | None:
    try:
        return usable_id(cid)
    except ValueError:
        return None


def _reason(failure: Failure) -> str:
    exc = failure.value
    if isinstance(exc, HttpError):
        return f"HTTP {exc.response.status}"
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


class CampaignsSpider(scrapy.Spider):
    name = "campaigns"
    # The spider's arguments (-a NAME=VALUE); the crawl command refuses others.
    # scrapyd adds _job (and _version when one is asked for) to the jobs it starts.
    arguments = {
        "client": "a client's slug from the registry, a comma-separated list, all, or a shard (shard:..., as "
                  "python -m adcrawler.dispatch writes it)",
        "dry_run": "1: list and validate every page and say what would be stored and synced; "
                   "write nothing, send no sync (the setting ADCRAWLER_DRY_RUN)",
        "node": "the scrapyd node the job was scheduled on, as the dispatcher names it (recorded with the run)",
        "_job": "the scrapyd job id (scrapyd sets it)",
        "_version": "the project version scrapyd runs (scrapyd sets it)",
    }

    def __init__(self, client: str = "", dry_run: str = "", *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.client_argument = client  # dry_run: read as ADCRAWLER_DRY_RUN (the crawl command sets it)

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any) -> "CampaignsSpider":
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.api_url = value(s, "AD_PLATFORM_API_URL")
        spider.page_size = value(s, "ADCRAWLER_PAGE_SIZE")
        spider.list_timeout = value(s, "ADCRAWLER_TIMEOUT_LIST")
        spider.sync_timeout = value(s, "ADCRAWLER_TIMEOUT_SYNC")
        spider.max_passes = value(s, "ADCRAWLER_SYNC_PASSES")
        spider.dry_run = value(s, "ADCRAWLER_DRY_RUN")
        spider.policy = RetryPolicy.from_settings(s)
        registry = Registry.load(value(s, "ADCRAWLER_CLIENTS_FILE") or None)
        spider.clients = registry.select(spider.client_argument)
        spider.run_stats = RunStats(crawler)
        # Connected before any extension's handler (the spider exists first):
        # the ledger knows the clients before the run records lock them.
        crawler.signals.connect(spider.opened, signal=signals.spider_opened)
        return spider

    def opened(self, spider: Any = None) -> None:
        self.ledger = RunLedger.of(self.crawler)
        self.ledger.open(self.clients)

    def run(self, client: str) -> ClientRun:
        return self.ledger.run(client)

    # -- start --------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.dry_run:
            logger.info("Dry run: every page is listed and validated; nothing is written and no sync is sent")
        for client_id in self.ledger.held():  # the others are synced by another run
            logger.info("Client %s (%s): starting", self.run(client_id).client.slug, client_id,
                        extra={"client": client_id})
            yield self.list_request(client_id, 1)

    def _meta(self, client: str, endpoint: str, timeout: float) -> dict[str, Any]:
        return {CLIENT: client, ENDPOINT: endpoint, "download_slot": f"client:{client}", "download_timeout": timeout}

    def list_request(self, client: str, page: int) -> scrapy.Request:
        query = urlencode({"page": page, "limit": self.page_size})
        return scrapy.Request(
            f"{self.api_url}/api/campaigns?{query}", headers={"X-Client-ID": client, "Accept": "application/json"},
            meta=self._meta(client, "list", self.list_timeout), cb_kwargs={"client": client, "page": page},
            callback=self.parse_list, errback=self.list_failed, priority=LIST_PRIORITY, dont_filter=True,
        )

    def sync_request(self, client: str, campaign_id: str, campaign: Campaign | None,
                     fetched_at: datetime) -> scrapy.Request:
        self.run(client).pending += 1
        return scrapy.Request(
            f"{self.api_url}/api/campaigns/{quote(campaign_id, safe='')}/sync", method="POST",
            headers={"X-Client-ID": client, "Accept": "application/json"},
            meta=self._meta(client, "sync", self.sync_timeout), dont_filter=True,
            cb_kwargs={"client": client, "campaign_id": campaign_id, "campaign": campaign, "fetched_at": fetched_at},
            callback=self.parse_sync, errback=self.sync_failed,
        )

    # -- listing ------------------------------------------------------------------------
    def parse_list(self, response: Response, client: str, page: int) -> Iterator[Any]:
        run = self.run(client)
        body = read_page(response.body)  # record by record: one hostile record cannot take the page down
        pagination = body.fields.get("pagination") if isinstance(body, Page) else None
        if not isinstance(body, Page) or body.entries is None or not isinstance(pagination or {}, dict):
            what = "not JSON" if body is NOT_JSON else "not a campaign list"
            yield from self._list_given_up(client, page, f"the answer is {what}")
            return
        pagination = pagination or {}
        self.run_stats.inc("list_pages", client)
        if run.listing.total is None:
            run.listing.announce(pagination.get("total"))
            if run.listing.total is not None:
                self.run_stats.set("campaigns_expected", run.listing.total, client)
        fetched_at = _now()
        new, beyond = 0, run.listing.beyond
        for entry in body.entries:
            record = entry.value if entry.error is None else {"id": entry.id}
            seen = run.listing.admit(record_key(record, entry.text), hashlib.sha1(entry.text.encode()).hexdigest())
            if seen == "duplicate":
                self.run_stats.inc("campaigns_duplicate", client)
                continue
            if seen == "changed":
                yield from self._changed(run, entry, fetched_at)
                continue
            new += 1
            self.run_stats.inc("campaigns_seen", client)
            yield from self._take(run, entry, fetched_at)
        if run.listing.beyond > beyond:
            self.run_stats.inc("campaigns_beyond_total", client, run.listing.beyond - beyond)
            logger.warning("Client %s: page %d brings the campaigns listed to %d, beyond the %d announced; "
                           "all kept (the platform's total is wrong)", client, page, run.listing.seen,
                           run.listing.total, extra={"client": client})
        after = run.listing.next_page(page, len(body.entries), new, pagination.get("limit"),
                                      pagination.get("has_more"))
        if after is not None:
            yield self.list_request(client, after)
            return
        if run.listing.stop_reason:
            logger.warning("Client %s: listing stopped: %s", client, run.listing.stop_reason, extra={"client": client})
        if run.listing.truncated:
            self.run_stats.inc("listings_truncated", client)
        logger.info("Client %s: list complete, %d campaigns on %d page(s)", client, run.listing.seen,
                    run.listing.pages, extra={"client": client})
        run.listing_done = True
        yield from self._next_pass(run)

    def _take(self, run: ClientRun, entry: Entry, fetched_at: datetime) -> Iterator[Any]:
        """A new record: quarantine it or sync it (or both, when only our copy is the problem)."""
        client = run.client_id
        try:
            if entry.error is not None:  # a parser limit: kept as text, its id (if usable) still synced
                self.run_stats.inc("records_at_parser_limit", client)
                raise InvalidRecord(f"{entry.error}; kept as sent", _usable(entry.id))
            campaign = validate_campaign(entry.value, entry.text)
        except InvalidRecord as exc:
            rejected = RejectedRecord.of(client, entry.value, str(exc), fetched_at, text=entry.text, cid=entry.id)
            self.ledger.quarantined(client, rejected.problem)
            logger.warning("Client %s: quarantined a record: %s", client, exc, extra={"client": client})
            yield rejected
            if exc.campaign_id and exc.campaign_id not in run.syncable:
                run.syncable.add(exc.campaign_id)
                if not self.dry_run:
                    yield self.sync_request(client, exc.campaign_id, None, fetched_at)
            return
        cid = campaign.campaign_id
        if cid in run.syncable:  # the same id under another representation on this list
            self.run_stats.inc("campaigns_duplicate", client)
            return
        run.syncable.add(cid)
        if cid in run.resumable:
            run.resumed += 1
            self.run_stats.inc("campaigns_resumed", client)
            return
        if self.dry_run:
            run.would_store += 1  # and sync: nothing leaves, nothing is written
            return
        yield self.sync_request(client, cid, campaign, fetched_at)

    def _changed(self, run: ClientRun, entry: Entry, fetched_at: datetime) -> Iterator[Any]:
        """A campaign listed again with other contents (the list moved while it was read): the later
        version is the one kept, under the sync this run makes or made of it."""
        client = run.client_id
        self.run_stats.inc("campaigns_conflicting", client)
        try:
            campaign = validate_campaign(entry.value, entry.text) if entry.error is None else None
        except InvalidRecord:
            campaign = None
        cid = campaign.campaign_id if campaign else _usable(entry.id)
        logger.warning("Client %s: campaign %s listed twice with other contents; the later one is kept", client,
                       cid or "without a usable id", extra={"client": client})
        if campaign is None or cid not in run.syncable:
            yield from self._take(run, entry, fetched_at)  # quarantined, or synced now, as any record
            return
        run.latest[cid] = campaign
        if cid in run.synced:  # stored already: stored again (the synced_at kept is the stored one)
            yield CampaignItem.of(client, campaign, fetched_at, sync_status="synced")
        elif cid in run.failed:
            failed = run.failed[cid]
            run.failed[cid] = FailedSync(campaign, fetched_at, failed.error, failed.retryable)
            yield CampaignItem.of(client, campaign, fetched_at, sync_status="failed", sync_error=failed.error)

    def list_failed(self, failure: Failure) -> Iterator[Any]:
        kwargs = failure.request.cb_kwargs
        yield from self._list_given_up(kwargs["client"], kwargs["page"], _reason(failure))

    def _list_given_up(self, client: str, page: int, reason: str) -> Iterator[Any]:
        run = self.run(client)
        run.list_failed += 1
        self.run_stats.inc("list_failed", client)
        logger.error("Client %s: gave up on list page %d (%s); campaigns after it are not synced",
                     client, page, reason, extra={"client": client})
        run.listing_done = True
        yield from self._next_pass(run)

    # -- syncing ------------------------------------------------------------------------
    def parse_sync(self, response: Response, client: str, campaign_id: str, campaign: Campaign | None,
                   fetched_at: datetime) -> Iterator[Any]:
        body = json_body(response.body)
        synced_at = None
        if isinstance(body, dict) and body.get("success") is True and body.get("campaign_id") == campaign_id:
            try:
                synced_at = datetime.fromisoformat(str(body.get("synced_at")).replace("Z", "+00:00"))
            except ValueError:
                synced_at = _now()
        if synced_at is None:
            yield from self._settle(client, campaign_id, campaign, fetched_at, "sync answer was not a success",
                                    again=True)
        else:
            yield from self._settle(client, campaign_id, campaign, fetched_at, None, synced_at=synced_at)

    def sync_failed(self, failure: Failure) -> Iterator[Any]:
        k = failure.request.cb_kwargs
        yield from self._settle(k["client"], k["campaign_id"], k["campaign"], k["fetched_at"], _reason(failure),
                                again=self._worth_another_pass(failure))

    def _worth_another_pass(self, failure: Failure) -> bool:
        """Asks the retry policy, with the verdict the retry middleware gave up on."""
        if isinstance(failure.value, AuthenticationFailed):
            return False
        verdict = failure.request.meta.get(VERDICT)
        return self.policy.worth_another_pass("sync", verdict or decide_exception(failure.value))

    def _settle(self, client: str, campaign_id: str, campaign: Campaign | None, fetched_at: datetime,
                error: str | None, synced_at: datetime | None = None, again: bool = False) -> Iterator[Any]:
        """A sync call's final answer for this pass: record it, then maybe start the next pass."""
        run = self.run(client)
        run.pending -= 1
        campaign = run.latest.get(campaign_id, campaign)  # listed again with other contents meanwhile
        if error is None:
            run.synced.add(campaign_id)
            self.run_stats.inc("campaigns_synced", client)
            if run.failed.pop(campaign_id, None) is not None:
                self.run_stats.inc("campaigns_recovered", client)
            if campaign is not None:
                yield CampaignItem.of(client, campaign, fetched_at, sync_status="synced", synced_at=synced_at)
        else:
            first = campaign_id not in run.failed
            run.failed[campaign_id] = FailedSync(campaign, fetched_at, error, again)
            if first:
                logger.warning("Client %s: sync of %s failed: %s", client, campaign_id, error, extra={"client": client})
                if campaign is not None:  # stored now, so nothing fetched waits in memory
                    yield CampaignItem.of(client, campaign, fetched_at, sync_status="failed", sync_error=error)
        yield from self._next_pass(run)

    def _next_pass(self, run: ClientRun) -> Iterator[scrapy.Request]:
        """Once a client's pass is over, try its failed syncs again while passes remain."""
        retry = {cid: f for cid, f in run.failed.items() if f.retryable}
        if not run.listing_done or run.pending or not retry or run.passes >= self.max_passes \
                or not self.crawler.engine.running:
            return
        run.passes += 1
        client = run.client_id
        self.run_stats.inc("sync_passes", client)
        logger.info("Client %s: pass %d of %d over %d failed sync(s)", client, run.passes, self.max_passes,
                    len(retry), extra={"client": client})
        for cid, failed in retry.items():
            yield self.sync_request(client, cid, failed.campaign, failed.fetched_at)
