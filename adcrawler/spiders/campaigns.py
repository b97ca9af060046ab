"""The campaigns spider: each client's list, page by page, and one sync call per campaign; a body that is
not what it should be is retried like a 503, and a sync given up on waits for another pass."""

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

from adcrawler.auth import AuthenticationFailed
from adcrawler.config import DRY_RUN, timeout, value
from adcrawler.ledger import CLIENTS_HELD, FailedSync, RunLedger
from adcrawler.listing import Entry, Page, read_page
from adcrawler.model import CampaignItem, InvalidRecord, RejectedRecord, record_key, usable_id, validate_campaign
from adcrawler.registry import Registry
from adcrawler.retry import (
    CLIENT,
    ENDPOINT,
    NOT_JSON,
    VERDICT,
    ClientGivenUp,
    Decision,
    RetryPolicy,
    Verdict,
    json_body,
    judge_exception,
    retry_request,
)
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)

LIST_PRIORITY = 10  # discover all work before spending budget on syncs


def _reason(failure: Failure) -> str:
    exc = failure.value
    if isinstance(exc, HttpError):
        return f"HTTP {exc.response.status}"
    if isinstance(exc, ClientGivenUp):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__


class CampaignsSpider(scrapy.Spider):
    name = "campaigns"
    # The spider's arguments (-a NAME=VALUE); the crawl command refuses others.
    arguments = {
        "client": "a client (its slug or its client id), a comma-separated list, all, or a shard (shard:..., as "
                  "scrapy dispatch writes it)",
        "dry_run": "1: list and validate every page and say what would be stored and synced; write nothing, "
                   "send no sync",
        "confirm_removals": "1: mark removed the campaigns a complete listing lacks even when they are more than "
                            "ADCRAWLER_REMOVAL_GUARD of the client's (the listing really shrank)",
        "resume": "run ids, comma-separated: the campaigns they stored as synced are not synced again (scrapy "
                  "dispatch sets it for the clients of a lost node, so their next node finishes those runs' work)",
        "node": "the scrapyd node the job was scheduled on, as the dispatcher names it (recorded with the run)",
        "_job": "the scrapyd job id (scrapyd sets it)",
        "_version": "the project version scrapyd runs (scrapyd sets it)",
    }

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> CampaignsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        s = crawler.settings
        spider.api_url = value(s, "AD_PLATFORM_API_URL")
        spider.page_size = value(s, "ADCRAWLER_PAGE_SIZE")
        spider.timeouts = {endpoint: timeout(s, endpoint) for endpoint in ("list", "sync")}
        spider.dry_run = s.getbool(DRY_RUN)
        spider.run_id = ""  # a dry run holds no client and sends no sync
        spider.policy = RetryPolicy.from_settings(s)
        # Of the arguments, only client is read here: the others are read as settings (the crawl command sets them).
        spider.clients = Registry.load(value(s, "ADCRAWLER_CLIENTS_FILE") or None).select(kwargs.get("client", ""))
        spider.stats = RunStats(crawler)
        # Connected before any extension's handler (the spider exists first): the ledger knows
        # the clients before the recorder locks them.
        crawler.signals.connect(spider.opened, signal=signals.spider_opened)
        crawler.signals.connect(spider.held, signal=CLIENTS_HELD)
        return spider

    def opened(self, spider: Any = None) -> None:
        self.ledger = RunLedger.of(self.crawler)
        self.ledger.open(self.clients)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.dry_run:
            logger.info("Dry run: every page is listed and validated; nothing is written and no sync is sent")
        for client in self.ledger.held():  # the others are synced by another run
            logger.info("Client %s: starting", self.ledger.run(client).client.name, extra={"client": client})
            yield self.list_request(client, 1)

    def held(self, job: Any, clients: list[str]) -> None:
        self.run_id = job.run_id  # the same after a JOBDIR resume

    def _request(self, client: str, endpoint: str, url: str, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> scrapy.Request:
        meta = {CLIENT: client, ENDPOINT: endpoint, "download_slot": f"client:{client}",
                "download_timeout": self.timeouts[endpoint]}
        return scrapy.Request(url, headers={"X-Client-ID": client, "Accept": "application/json", **(headers or {})},
                              meta=meta, dont_filter=True, **kwargs)

    def list_request(self, client: str, page: int) -> scrapy.Request:
        query = urlencode({"page": page, "limit": self.page_size})
        return self._request(client, "list", f"{self.api_url}/api/campaigns?{query}", priority=LIST_PRIORITY,
                             cb_kwargs={"client": client, "page": page}, callback=self.parse_list,
                             errback=self.list_failed)

    def sync_request(self, client: str, campaign_id: str, campaign: Any, fetched_at: datetime) -> scrapy.Request:
        self.ledger.sync_sent(client)
        # One key per logical call, the same on every retry and pass of this run (IETF
        # draft-ietf-httpapi-idempotency-key-header): a platform that honours it executes the sync
        # once however often a lost answer makes us send it; one that does not ignores the header.
        key = hashlib.sha256(f"{self.run_id}|{client}|{campaign_id}".encode()).hexdigest()[:32]
        return self._request(client, "sync", f"{self.api_url}/api/campaigns/{quote(campaign_id, safe='')}/sync",
                             headers={"Idempotency-Key": f'"{key}"'}, method="POST", callback=self.parse_sync,
                             errback=self.sync_failed,
                             cb_kwargs={"client": client, "campaign_id": campaign_id, "campaign": campaign,
                                        "fetched_at": fetched_at})

    def _again(self, response: Response, body: Any, reason: str) -> scrapy.Request | None:
        """A 200 whose body is not JSON, or not what it should be (``reason``): retried like a 503
        (Scrapy's pattern of ``get_retry_request`` from the callback), or None when the policy gives up."""
        decision = Decision(Verdict.RETRY, "invalid_json" if body is NOT_JSON else reason)
        return retry_request(response.request, decision, self.policy, self.stats, self)

    # -- listing ------------------------------------------------------------------------
    def parse_list(self, response: Response, client: str, page: int) -> Iterator[Any]:
        body = read_page(response.body)  # record by record: one hostile record cannot take the page down
        pagination = body.fields.get("pagination") if isinstance(body, Page) else None
        if not isinstance(body, Page) or body.entries is None or not isinstance(pagination or {}, dict):
            what = "not JSON" if body is NOT_JSON else "not a campaign list"
            if (again := self._again(response, body, "not_a_list")) is not None:
                yield again
                return
            self.ledger.list_failed(client, page, f"the answer is {what}")
            yield from self._next_pass(client)
            return
        pagination = pagination or {}
        self.ledger.page_read(client, pagination.get("total"))
        fetched_at, new, beyond = datetime.now(timezone.utc), 0, self.ledger.run(client).listing.beyond
        for entry in body.entries:
            record = entry.value if entry.error is None else {"id": entry.id}
            seen = self.ledger.listed(client, record_key(record, entry.text),
                                      hashlib.sha1(entry.text.encode()).hexdigest(), record)
            if seen == "new":
                new += 1
                yield from self._take(client, entry, fetched_at)
            elif seen == "changed":
                yield from self._changed(client, entry, fetched_at)
        after = self.ledger.page_done(client, page, len(body.entries), new, beyond, pagination.get("limit"),
                                      pagination.get("has_more"))
        if after is not None:
            yield self.list_request(client, after)
        else:
            yield from self._next_pass(client)

    def _take(self, client: str, entry: Entry, fetched_at: datetime) -> Iterator[Any]:
        """A new record: quarantine it or sync it (or both, when only our copy is the problem)."""
        try:
            if entry.error is not None:  # a parser limit: kept as text, its id (if usable) still synced
                self.stats.inc("records_at_parser_limit", client)
                raise InvalidRecord(f"{entry.error}; kept as sent", usable_id(entry.id, None))
            campaign = validate_campaign(entry.value, entry.text)
        except InvalidRecord as exc:
            rejected = RejectedRecord.of(client, entry.value, str(exc), fetched_at, text=entry.text, cid=entry.id)
            self.ledger.quarantined(client, rejected.problem)
            logger.warning("Client %s: quarantined a record: %s", client, exc, extra={"client": client})
            yield rejected
            if exc.campaign_id and self.ledger.to_sync(client, exc.campaign_id, storable=False):
                yield self.sync_request(client, exc.campaign_id, None, fetched_at)
            return
        if self.ledger.to_sync(client, campaign.campaign_id):
            yield self.sync_request(client, campaign.campaign_id, campaign, fetched_at)

    def _changed(self, client: str, entry: Entry, fetched_at: datetime) -> Iterator[Any]:
        """A campaign listed again with other contents (the list moved while it was read): the later
        version is kept, under the sync this run makes or made of it."""
        try:
            campaign = validate_campaign(entry.value, entry.text) if entry.error is None else None
        except InvalidRecord:
            campaign = None
        cid = campaign.campaign_id if campaign else usable_id(entry.id, None)
        logger.warning("Client %s: campaign %s listed twice with other contents; the later one is kept", client,
                       cid or "without a usable id", extra={"client": client})
        if campaign is None or cid not in self.ledger.run(client).syncable:
            yield from self._take(client, entry, fetched_at)  # quarantined, or synced now, as any record
            return
        state = self.ledger.relisted(client, campaign)
        if state == "synced":  # stored already: stored again (the stored synced_at is kept)
            yield CampaignItem.of(client, campaign, fetched_at, sync_status="synced")
        elif state == "failed":
            error = self.ledger.run(client).failed[cid].error
            yield CampaignItem.of(client, campaign, fetched_at, sync_status="failed", sync_error=error)

    def list_failed(self, failure: Failure) -> Iterator[Any]:
        kwargs = failure.request.cb_kwargs
        self.ledger.list_failed(kwargs["client"], kwargs["page"], _reason(failure))
        yield from self._next_pass(kwargs["client"])

    # -- syncing ------------------------------------------------------------------------
    def parse_sync(self, response: Response, client: str, campaign_id: str, campaign: Any,
                   fetched_at: datetime) -> Iterator[Any]:
        body = json_body(response.body)
        if not (isinstance(body, dict) and body.get("success") is True and body.get("campaign_id") == campaign_id):
            if (again := self._again(response, body, "sync_not_a_success")) is not None:
                yield again
                return
            # Out of retries for a transient fault: worth another pass, as a 503 is.
            yield from self._failed(client, campaign_id, campaign, fetched_at, "sync answer was not a success", True)
            return
        try:
            synced_at = datetime.fromisoformat(str(body.get("synced_at")).replace("Z", "+00:00"))
        except ValueError:
            synced_at = datetime.now(timezone.utc)
        latest = self.ledger.synced(client, campaign_id, campaign)
        if latest is not None:
            yield CampaignItem.of(client, latest, fetched_at, sync_status="synced", synced_at=synced_at)
        yield from self._next_pass(client)

    def sync_failed(self, failure: Failure) -> Iterator[Any]:
        k = failure.request.cb_kwargs
        verdict = failure.request.meta.get(VERDICT) or judge_exception(failure.value)
        again = not isinstance(failure.value, AuthenticationFailed) and self.policy.worth_another_pass("sync", verdict)
        yield from self._failed(k["client"], k["campaign_id"], k["campaign"], k["fetched_at"], _reason(failure), again)

    def _failed(self, client: str, campaign_id: str, campaign: Any, fetched_at: datetime, error: str,
                again: bool) -> Iterator[Any]:
        first = self.ledger.sync_failed(client, campaign_id, FailedSync(campaign, fetched_at, error, again))
        if first is not None:  # stored now, so that nothing fetched waits in memory
            yield CampaignItem.of(client, first, fetched_at, sync_status="failed", sync_error=error)
        yield from self._next_pass(client)

    def _next_pass(self, client: str) -> Iterator[scrapy.Request]:
        """Once a client's pass is over, its failed syncs again while passes remain."""
        if not self.crawler.engine.running:
            return
        for cid, failed in self.ledger.next_pass(client).items():
            yield self.sync_request(client, cid, failed.campaign, failed.fetched_at)
