"""The scheduler and the downloader middlewares, built from a crawler with the project's settings."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadTimeoutError
from scrapy.http import Headers, Response, TextResponse
from scrapy.settings import Settings
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from adcrawler.auth import TOKEN_SERIAL, AuthenticationFailed, BearerTokenMiddleware
from adcrawler.budget import read_signals
from adcrawler.ledger import RunLedger
from adcrawler.retry import ATTEMPTS, CLIENT, ENDPOINT, NOT_BEFORE, PAUSE, SIGNALS, VERDICT, RetryMiddleware
from adcrawler.scheduler import BudgetScheduler
from adcrawler.spiders.campaigns import CampaignsSpider
from tests.conftest import Clock

API = "http://127.0.0.1:9"


def make_crawler(**overrides):
    settings = Settings()
    settings.setmodule("adcrawler.settings")
    values = {**settings.copy_to_dict(), "TWISTED_REACTOR_ENABLED": False, "AD_PLATFORM_API_URL": API, **overrides}
    crawler = get_crawler(CampaignsSpider, values)
    crawler.spider = crawler._create_spider(client="acme,globex")
    ledger = crawler.spider.ledger = RunLedger.of(crawler)
    ledger.open(crawler.spider.clients)
    for client in ledger.runs:
        ledger.hold(client)  # as the run records do once the locks are taken
    return crawler


def api_request(client="acme-corp", path="/api/campaigns", endpoint="list", priority=0) -> Request:
    return Request(API + path, meta={CLIENT: client, ENDPOINT: endpoint}, priority=priority)


def json_response(request, status, body=None, headers=None) -> Response:
    """An answer, its headers read as the scheduler reads them when they arrive."""
    request.meta[SIGNALS] = read_signals(Headers(headers or {}).get, 0.0)
    return TextResponse(request.url, status=status, body=json.dumps(body or {}).encode(),
                        headers=headers or {}, request=request)


class FakeEngine:
    """What the scheduler and the token middleware use of Scrapy's engine."""

    def __init__(self, scheduler=None, answers=None, middleware=None):
        self.scheduler = scheduler
        self.answers = list(answers or [])  # token endpoint answers: (status, body, headers)
        self.middleware = middleware
        self.requests: list[Request] = []
        self.crawled: list[Request] = []
        self.closed: list[str] = []
        self.running = True

    def crawl(self, request):
        self.crawled.append(request)
        self.scheduler.enqueue_request(request)

    async def download_async(self, request):
        await self.middleware.process_request(request)  # the downloader chain passes through it
        self.requests.append(request.copy())
        status, body, headers = self.answers.pop(0) if self.answers else (
            200, {"access_token": f"tok-{len(self.requests)}", "token_type": "Bearer", "expires_in": 3600}, {})
        if isinstance(status, type):
            self.middleware.process_exception(request, status())
            raise status()
        await asyncio.sleep(0.001)
        return self.middleware.process_response(request, json_response(request, status, body, headers))

    async def close_spider_async(self, reason):
        self.closed.append(reason)


# -- the budget-aware scheduler -------------------------------------------------

def make_scheduler(limit=2, window=60.0):
    crawler = make_crawler(ADCRAWLER_RATE_LIMIT=limit, ADCRAWLER_RATE_WINDOW=window)
    clock = Clock()
    scheduler = BudgetScheduler(crawler, limit, window, clock, clock.call_later)
    crawler.engine = FakeEngine(scheduler)
    return crawler, scheduler, clock


def answered(scheduler, request, status=200):
    """A request's answer reached the engine: the downloader's two signals, in their order."""
    scheduler.response_downloaded(SimpleNamespace(status=status), request)
    scheduler.request_left_downloader(request)


def drain(scheduler):
    out = []
    while (request := scheduler.next_request()) is not None:
        out.append(request)
    return out


def test_a_client_gets_its_budget_then_waits_a_window_after_an_answer():
    async def scenario():
        crawler, scheduler, clock = make_scheduler(limit=2, window=60)
        for n in range(5):
            scheduler.enqueue_request(api_request(path=f"/{n}"))
        sent = drain(scheduler)
        assert [r.url[-1] for r in sent] == ["0", "1"]
        assert scheduler.has_pending_requests() and len(scheduler) == 3
        clock.now += 2
        answered(scheduler, sent[0])  # answered at 1002: its place frees at 1062
        assert drain(scheduler) == []
        clock.now = 1061.9
        assert drain(scheduler) == []
        clock.now = 1062
        assert [r.url[-1] for r in drain(scheduler)] == ["2"]
        assert crawler.stats.get_value("adcrawler/client/acme-corp/requests_sent") == 3
        assert crawler.stats.get_value("adcrawler/client/acme-corp/last_latency_seconds") == 2
    asyncio.run(scenario())


def test_clients_take_turns_and_one_clients_backlog_never_blocks_another():
    async def scenario():
        _, scheduler, _ = make_scheduler(limit=3)
        for n in range(50):
            scheduler.enqueue_request(api_request("big", path=f"/{n}"))
        for client in ("a", "b"):
            scheduler.enqueue_request(api_request(client))
        sent = [r.meta[CLIENT] for r in drain(scheduler)]
        assert sorted(sent) == ["a", "b", "big", "big", "big"]  # each within its own budget
        assert sent.index("a") < 3 and sent.index("b") < 3  # served in turn, not after big's backlog
    asyncio.run(scenario())


def test_list_pages_go_before_syncs_within_a_client():
    async def scenario():
        _, scheduler, _ = make_scheduler(limit=10)
        scheduler.enqueue_request(api_request(path="/sync", endpoint="sync"))
        scheduler.enqueue_request(api_request(path="/list", priority=10))
        assert [r.url.rsplit("/", 1)[1] for r in drain(scheduler)] == ["list", "sync"]
    asyncio.run(scenario())


def test_a_429_pauses_the_whole_client_and_lowers_its_limit():
    async def scenario():
        crawler, scheduler, clock = make_scheduler(limit=8)
        again = api_request()
        again.meta[PAUSE] = 30
        scheduler.enqueue_request(again)
        scheduler.enqueue_request(api_request("globex"))
        assert [r.meta[CLIENT] for r in drain(scheduler)] == ["globex"]
        clock.now += 30
        assert drain(scheduler) == [again]
        assert crawler.stats.get_value("adcrawler/client/acme-corp/rate_limit_effective") == 4  # halved
    asyncio.run(scenario())


def test_clients_naming_one_partition_share_its_budget_and_take_turns():
    async def scenario():
        _, scheduler, clock = make_scheduler(limit=4, window=60)
        for client in ("acme-corp", "globex"):
            for n in range(4):
                scheduler.enqueue_request(api_request(client, path=f"/{n}"))
        first = drain(scheduler)  # each client's own budget, before the platform says more
        assert len(first) == 8
        said = Headers({"RateLimit-Policy": '"d";q=4;w=60;pk=:YWNjb3VudA==:'})  # the policy, not the count
        for request in first[:2]:  # one answer of each client names the partition
            scheduler.headers_received(said, 0, request)
        for request in first:
            answered(scheduler, request)
        assert scheduler.sharing("acme-corp") == ["acme-corp", "globex"]
        for client in ("acme-corp", "globex"):
            for n in range(4, 8):
                scheduler.enqueue_request(api_request(client, path=f"/{n}"))
        clock.now += 60.7  # the eight places of both clients free together, a window after their sends
        turns = [r.meta[CLIENT] for r in drain(scheduler)]
        assert turns == ["acme-corp", "globex", "acme-corp", "globex"]  # four places, shared in turn
    asyncio.run(scenario())


def _partition(name: str) -> Headers:
    import base64

    return Headers({"RateLimit-Policy": f'"d";q=2;w=60;pk=:{base64.b64encode(name.encode()).decode()}:'})


def _run_until_done(scheduler, clock, partition_of, rounds=200):
    """Send, answer (each answer naming the client's partition now) and release until nothing waits;
    returns the requests sent. Between rounds nothing is in flight, so no budget may count any in flight
    (or wait for one to finish)."""
    sent = []
    for turn in range(rounds):
        batch = drain(scheduler)
        for request in batch:
            scheduler.headers_received(_partition(partition_of(request.meta[CLIENT], turn)), 0, request)
            clock.advance(0.5)
            answered(scheduler, request)
        sent += batch
        for budget in scheduler.budgets.values():  # every answer is in: nothing is in flight
            assert budget.in_flight == 0 and budget.wait_time() < float("inf")
        if not scheduler.has_pending_requests():
            return sent
        clock.advance(61)
    raise AssertionError(f"requests still waiting after {rounds} windows: {len(scheduler)}")


@pytest.mark.parametrize("moves", ["one client once", "one client every answer", "every client every answer"])
def test_a_client_moving_between_partitions_takes_only_its_own_places_and_nothing_stalls(moves):
    async def scenario():
        _, scheduler, clock = make_scheduler(limit=2, window=60)
        for client in ("a", "b", "c"):
            for n in range(12):
                scheduler.enqueue_request(api_request(client, path=f"/{client}{n}"))

        def partition_of(client: str, turn: int) -> str:
            if moves == "one client once":  # c names P1 first; a moves from P0 (b's) to P1 mid-flight
                return "P1" if client == "c" or (client == "a" and turn >= 1) else "P0"
            if moves == "one client every answer":
                return f"P{turn % 2}" if client == "a" else "P0"
            return f"P{(turn + ord(client)) % 2}"

        sent = _run_until_done(scheduler, clock, partition_of)
        assert sorted(r.url for r in sent) == sorted(f"{API}/{c}{n}" for c in "abc" for n in range(12))
    asyncio.run(scenario())


def test_a_backoff_waits_outside_the_queues_and_comes_back_through_the_engine():
    crawler, scheduler, clock = make_scheduler()
    later = api_request()
    later.meta[NOT_BEFORE] = 5
    scheduler.enqueue_request(later)
    assert drain(scheduler) == [] and scheduler.has_pending_requests()
    clock.advance(4.9)
    assert crawler.engine.crawled == []
    clock.advance(0.1)
    assert crawler.engine.crawled == [later]  # handed back: the engine asks again
    assert drain(scheduler) == [later] and not scheduler.has_pending_requests()


def test_the_engine_is_woken_when_a_budget_frees():
    crawler, scheduler, clock = make_scheduler(limit=1, window=60)
    first, second = api_request(path="/1"), api_request(path="/2")
    scheduler.enqueue_request(first)
    scheduler.enqueue_request(second)
    assert drain(scheduler) == [first]
    clock.advance(2)
    answered(scheduler, first)  # its place frees a window after this answer
    assert drain(scheduler) == []
    clock.advance(59.9)
    assert crawler.engine.crawled == []  # the window has not passed
    clock.advance(0.1)
    assert crawler.engine.crawled == [second] and drain(scheduler) == [second]


# -- acting on verdicts ------------------------------------------------------------

def test_503_is_retried_after_a_backoff_that_the_scheduler_keeps():
    crawler = make_crawler()
    mw = build_from_crawler(RetryMiddleware, crawler)
    req = api_request()
    retry = mw.process_response(req, json_response(req, 503))
    assert isinstance(retry, Request) and retry.meta["retry_times"] == 1 and 0.5 <= retry.meta[NOT_BEFORE] <= 1
    assert crawler.stats.get_value("adcrawler/client/acme-corp/retries/http_503") == 1
    assert crawler.stats.get_value("retry/count") == 1
    told = mw.process_response(req, json_response(req, 503, headers={"Retry-After": "7"}))
    assert told.meta[NOT_BEFORE] == 7  # the platform's Retry-After, on a 503 too
    not_found = json_response(req, 404)
    assert mw.process_response(req, not_found) is not_found


def test_timeouts_are_retried_until_retry_times_then_left_to_the_errback():
    crawler = make_crawler()
    mw = build_from_crawler(RetryMiddleware, crawler)
    req = api_request()
    for _ in range(6):
        req = mw.process_exception(req, DownloadTimeoutError())
        assert isinstance(req, Request)
    assert mw.process_exception(req, DownloadTimeoutError()) is None
    assert crawler.stats.get_value("retry/max_reached") == 1


def test_429_asks_the_scheduler_to_pause_the_client_then_gives_up():
    crawler = make_crawler()
    mw = build_from_crawler(RetryMiddleware, crawler)
    req = api_request()
    for attempt in range(1, 6):
        req = mw.process_response(req, json_response(req, 429, {"retry_after": 60}))
        assert req.meta[ATTEMPTS] == {"rate_limited": attempt} and req.meta[PAUSE] == 60
    final = json_response(req, 429)
    assert mw.process_response(req, final) is final
    assert crawler.stats.get_value("adcrawler/client/acme-corp/responses_429") == 6
    # Counted as retries like any other, under Scrapy's names too.
    assert crawler.stats.get_value("adcrawler/client/acme-corp/retries/http_429") == 5
    assert crawler.stats.get_value("retry/count") == 5 and crawler.stats.get_value("retry/max_reached") == 1
    assert req.meta[VERDICT].reason == "http_429"  # left for the errback and the extra passes


def test_a_200_that_is_not_json_is_retried_from_the_callback():
    crawler = make_crawler()
    req = api_request()
    page = TextResponse(req.url, status=200, body=b"<html>Bad gateway</html>", request=req)
    crawler.spider.ledger.hold("acme-corp")
    [again] = list(crawler.spider.parse_list(page, client="acme-corp", page=1))
    assert isinstance(again, Request) and 0.5 <= again.meta[NOT_BEFORE] <= 1
    assert crawler.stats.get_value("adcrawler/client/acme-corp/retries/invalid_json") == 1


# -- the bearer token ------------------------------------------------------------

def token_setup(monkeypatch, answers=(), **overrides):
    monkeypatch.setenv("AD_PLATFORM_EMAIL", "admin@mixoads.com")
    monkeypatch.setenv("AD_PLATFORM_PASSWORD", "pw-for-tests")
    crawler = make_crawler(ADCRAWLER_TIME_SCALE=0.001, **overrides)  # backoffs of a millisecond
    mw = build_from_crawler(BearerTokenMiddleware, crawler)
    crawler.engine = FakeEngine(answers=answers, middleware=mw)
    crawler._engine = crawler.engine
    return crawler, mw, crawler.engine


def test_one_token_request_for_many_concurrent_requests(monkeypatch):
    crawler, mw, engine = token_setup(monkeypatch)
    requests = [api_request() for _ in range(20)]

    async def scenario():
        await asyncio.gather(*(mw.process_request(r) for r in requests))

    asyncio.run(scenario())
    assert len(engine.requests) == 1
    assert {r.headers["Authorization"] for r in requests} == {b"Bearer tok-1"}
    assert crawler.stats.get_value("adcrawler/client/acme-corp/token_refreshes") == 1


def test_a_token_request_keeps_its_credentials_through_failures(monkeypatch):
    answers = [(503, {"error": "Service temporarily unavailable"}, {}), (DownloadTimeoutError, None, None),
               (429, {"retry_after": 0.001}, {}), (200, {"no": "token"}, {})]
    crawler, mw, engine = token_setup(monkeypatch, answers)
    req = api_request()
    asyncio.run(mw.process_request(req))
    assert req.headers["Authorization"] == b"Bearer tok-5"
    basics = [r.headers.get("Authorization", b"") for r in engine.requests]
    assert len(basics) == 5 and all(b.startswith(b"Basic ") for b in basics)  # sent whole every time
    assert crawler.stats.get_value("adcrawler/client/acme-corp/token_retries") == 4


def test_wrong_credentials_fail_the_client_at_once(monkeypatch):
    crawler, mw, engine = token_setup(monkeypatch, [(401, {"error": "Invalid credentials"}, {})] * 2)

    async def scenario():
        for client in ("acme-corp", "acme-corp", "globex"):
            with pytest.raises(AuthenticationFailed, match="credentials refused"):
                await mw.process_request(api_request(client))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert len(engine.requests) == 2  # once per client, never again
    assert engine.closed == ["auth_failed"]  # closed once no client was left
    assert crawler.stats.get_value("adcrawler/auth_failed") == 2


def test_a_token_endpoint_that_never_recovers_fails_the_client_after_its_retries(monkeypatch):
    crawler, mw, engine = token_setup(monkeypatch, [(503, {}, {})] * 10)
    mw.outage_limit = 0.0  # no outage to wait out (test_faults waits one out): the retry count decides

    async def scenario():
        with pytest.raises(AuthenticationFailed, match=r"token endpoint unavailable \(http_503\) after 7 attempts"):
            await mw.process_request(api_request())

    asyncio.run(scenario())
    assert len(engine.requests) == 7


def test_a_refused_token_is_dropped_and_the_request_sent_again_with_a_new_one(monkeypatch):
    crawler, tokens, engine = token_setup(monkeypatch)
    retry_mw = build_from_crawler(RetryMiddleware, crawler)
    req = api_request()
    asyncio.run(tokens.process_request(req))
    refused = tokens.process_response(req, json_response(req, 401, {"error": "Token expired"}))
    assert b"Authorization" not in req.headers  # never copied into a retry
    again = retry_mw.process_response(req, refused)
    assert isinstance(again, Request)
    asyncio.run(tokens.process_request(again))
    assert again.headers["Authorization"] == b"Bearer tok-2"
    assert crawler.stats.get_value("adcrawler/client/acme-corp/token_rejected") == 1


def test_a_request_goes_out_with_the_token_it_waited_for_even_if_that_was_refused_meanwhile(monkeypatch):
    crawler, mw, engine = token_setup(monkeypatch)
    first, second = api_request(), api_request()

    async def scenario():
        waiting = asyncio.ensure_future(mw.process_request(first))
        await asyncio.sleep(0)  # the refresh has started
        auth = mw.clients["acme-corp"]

        def refused(_):  # a refusal of the new token lands before the waiters wake
            mw.invalidate(Request("https://api.test/x", meta={CLIENT: "acme-corp", TOKEN_SERIAL: auth.serial}))

        auth.refreshing.add_done_callback(refused)
        await asyncio.gather(waiting, mw.process_request(second))

    asyncio.run(scenario())
    assert first.headers["Authorization"] == second.headers["Authorization"] == b"Bearer tok-1"
    assert mw.clients["acme-corp"].token is None  # the next request asks for a new one


# -- every body is parsed once -------------------------------------------------------

def test_a_list_page_a_sync_answer_and_a_token_answer_are_each_parsed_once(monkeypatch):
    import adcrawler.listing
    import adcrawler.spiders.campaigns

    parses = []

    def counted(real, name):
        def parse(body, *args, **kwargs):
            parses.append(name)
            return real(body, *args, **kwargs)
        return parse

    # Every JSON parse of ours goes through json.loads, but a list page's, read record by record.
    monkeypatch.setattr(json, "loads", counted(json.loads, "loads"))
    monkeypatch.setattr(adcrawler.spiders.campaigns, "read_page", counted(adcrawler.listing.read_page, "read_page"))

    crawler, tokens, engine = token_setup(monkeypatch)
    retry_mw = build_from_crawler(RetryMiddleware, crawler)
    spider = crawler.spider
    spider.ledger.hold("acme-corp")

    def through(request, status, body):
        response = json_response(request, status, body)
        return retry_mw.process_response(request, tokens.process_response(request, response))

    asyncio.run(tokens.process_request(api_request()))
    assert parses == ["loads"]  # the token answer
    page = spider.list_request("acme-corp", 1)
    record = {"id": "campaign_1", "name": "Campaign 1", "status": "active", "budget": 10, "impressions": 5,
              "clicks": 1, "conversions": 0, "created_at": "2026-01-01T00:00:00Z"}
    answer = through(page, 200, {"data": [record], "pagination": {"page": 1, "limit": 100, "total": 1,
                                                                  "has_more": False}})
    [sync] = [r for r in spider.parse_list(answer, client="acme-corp", page=1) if isinstance(r, Request)]
    assert parses == ["loads", "read_page"]  # the list page, once, record by record
    answer = through(sync, 200, {"success": True, "campaign_id": "campaign_1", "synced_at": "2026-01-01T00:00:01Z"})
    items = list(spider.parse_sync(answer, **sync.cb_kwargs))
    assert [item.campaign_id for item in items] == ["campaign_1"]
    assert parses == ["loads", "read_page", "loads"]  # the sync answer, once
