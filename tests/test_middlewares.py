"""Downloader middlewares, built from a crawler with the project's settings."""

from __future__ import annotations

import asyncio
import json

import pytest
from scrapy import Request
from scrapy.exceptions import DownloadTimeoutError
from scrapy.http import Response, TextResponse
from scrapy.settings import Settings
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from adcrawler.middlewares import CLIENT
from adcrawler.middlewares.auth import AuthenticationFailed, BearerTokenMiddleware
from adcrawler.middlewares.ratebudget import RateBudgetMiddleware
from adcrawler.middlewares.retry import BackoffRetryMiddleware
from adcrawler.settings_check import SettingError
from adcrawler.spiders.campaigns import CampaignsSpider

API = "http://127.0.0.1:9"


def make_crawler(**overrides):
    settings = Settings()
    settings.setmodule("adcrawler.settings")
    values = {**settings.copy_to_dict(), "TWISTED_REACTOR_ENABLED": False, "ADCRAWLER_API_URL": API,
              "ADCRAWLER_RETRY_BACKOFF_BASE": 0.001, "ADCRAWLER_RETRY_BACKOFF_MAX": 0.002, **overrides}
    crawler = get_crawler(CampaignsSpider, values)
    crawler.spider = crawler._create_spider(client="acme,globex")
    return crawler


def api_request(client="acme-corp", path="/api/campaigns") -> Request:
    return Request(API + path, meta={CLIENT: client})


def json_response(request, status, body=None, headers=None) -> Response:
    return TextResponse(request.url, status=status, body=json.dumps(body or {}).encode(),
                        headers=headers or {}, request=request)


# -- rate budget and 429 -------------------------------------------------------

def test_429_pauses_only_that_client_for_retry_after():
    crawler = make_crawler()
    mw = build_from_crawler(RateBudgetMiddleware, crawler)
    req = api_request()
    retry = mw.process_response(req, json_response(req, 429, {"retry_after": 60}, {"Retry-After": "12"}))
    assert isinstance(retry, Request) and retry.meta["adcrawler_429_times"] == 1 and retry.dont_filter
    assert 11.9 < mw.budget("acme-corp").wait_time() <= 12
    assert mw.budget("globex").wait_time() == 0
    assert crawler.stats.get_value("adcrawler/client/acme-corp/responses_429") == 1


def test_429_without_any_wait_falls_back_to_backoff_and_gives_up_eventually():
    crawler = make_crawler(ADCRAWLER_RATE_429_RETRIES=2)
    mw = build_from_crawler(RateBudgetMiddleware, crawler)
    req = api_request()
    for attempt in (1, 2):
        req = mw.process_response(req, json_response(req, 429, {"error": "Rate limit exceeded"}))
        assert req.meta["adcrawler_429_times"] == attempt
    final = json_response(req, 429)
    assert mw.process_response(req, final) is final
    assert 0 < mw.budget("acme-corp").wait_time() <= 0.002


def test_budget_gate_admits_the_limit_then_holds_until_places_free():
    crawler = make_crawler(ADCRAWLER_RATE_LIMIT=2, ADCRAWLER_RATE_WINDOW=0.2)
    mw = build_from_crawler(RateBudgetMiddleware, crawler)

    async def scenario():
        loop = asyncio.get_running_loop()
        requests = [api_request() for _ in range(3)]
        await mw.process_request(requests[0])
        await mw.process_request(requests[1])
        third = asyncio.ensure_future(mw.process_request(requests[2]))
        await asyncio.sleep(0.05)
        assert not third.done()  # both places held while in flight
        began = loop.time()
        mw._left_downloader(requests[0])
        await third
        return loop.time() - began

    waited = asyncio.run(scenario())
    assert waited >= 0.19  # a full window after the first request finished
    assert crawler.stats.get_value("adcrawler/client/acme-corp/requests_sent") == 3


def test_requests_without_client_are_not_budgeted():
    mw = build_from_crawler(RateBudgetMiddleware, make_crawler(ADCRAWLER_RATE_LIMIT=1))
    assert asyncio.run(mw.process_request(Request(API + "/auth/token"))) is None
    assert mw.budgets == {}


def test_bad_setting_fails_at_start_naming_it():
    with pytest.raises(SettingError, match="ADCRAWLER_RATE_LIMIT"):
        build_from_crawler(RateBudgetMiddleware, make_crawler(ADCRAWLER_RATE_LIMIT=0))
    with pytest.raises(SettingError, match="ADCRAWLER_RATE_WINDOW"):
        build_from_crawler(RateBudgetMiddleware, make_crawler(ADCRAWLER_RATE_WINDOW="soon"))


# -- retries --------------------------------------------------------------------

def test_503_is_retried_with_stats_and_other_4xx_is_not():
    crawler = make_crawler()
    mw = build_from_crawler(BackoffRetryMiddleware, crawler)
    req = api_request()
    retry = asyncio.run(mw.process_response(req, json_response(req, 503)))
    assert isinstance(retry, Request) and retry.meta["retry_times"] == 1
    assert crawler.stats.get_value("adcrawler/client/acme-corp/retries/http_503") == 1
    assert crawler.stats.get_value("retry/count") == 1
    not_found = json_response(req, 404)
    assert asyncio.run(mw.process_response(req, not_found)) is not_found


def test_timeouts_are_retried_until_retry_times_then_left_to_the_errback():
    crawler = make_crawler(RETRY_TIMES=2)
    mw = build_from_crawler(BackoffRetryMiddleware, crawler)
    req = api_request()
    for _ in range(2):
        req = asyncio.run(mw.process_exception(req, DownloadTimeoutError()))
        assert isinstance(req, Request)
    assert asyncio.run(mw.process_exception(req, DownloadTimeoutError())) is None
    assert crawler.stats.get_value("retry/max_reached") == 1


# -- bearer token ----------------------------------------------------------------

class FakeEngine:
    """Stands in for the Scrapy engine's download_async: answers /auth/token."""

    def __init__(self, status=200, expires_in=3600):
        self.calls = 0
        self.status = status
        self.expires_in = expires_in

    async def download_async(self, request):
        self.calls += 1
        assert request.headers["Authorization"].startswith(b"Basic ")
        await asyncio.sleep(0.01)
        body = {"access_token": f"tok-{self.calls}", "token_type": "Bearer", "expires_in": self.expires_in}
        return json_response(request, self.status, body if self.status == 200 else {"error": "Unauthorized"})


def token_mw(monkeypatch, engine):
    monkeypatch.setenv("AD_PLATFORM_EMAIL", "admin@mixoads.com")
    monkeypatch.setenv("AD_PLATFORM_PASSWORD", "pw-for-tests")
    crawler = make_crawler()
    crawler.engine = engine
    return crawler, build_from_crawler(BearerTokenMiddleware, crawler)


def test_one_token_request_for_many_concurrent_requests(monkeypatch):
    engine = FakeEngine()
    crawler, mw = token_mw(monkeypatch, engine)
    requests = [api_request() for _ in range(20)]

    async def scenario():
        await asyncio.gather(*(mw.process_request(r) for r in requests))

    asyncio.run(scenario())
    assert engine.calls == 1
    assert {r.headers["Authorization"] for r in requests} == {b"Bearer tok-1"}
    assert crawler.stats.get_value("adcrawler/client/acme-corp/token_refreshes") == 1


def test_token_expired_answer_refreshes_and_resends_without_the_old_header(monkeypatch):
    engine = FakeEngine()
    _, mw = token_mw(monkeypatch, engine)
    req = api_request()
    asyncio.run(mw.process_request(req))
    retry = mw.process_response(req, json_response(req, 401, {"error": "Token expired"}))
    assert isinstance(retry, Request) and b"Authorization" not in retry.headers
    asyncio.run(mw.process_request(retry))
    assert retry.headers["Authorization"] == b"Bearer tok-2"
    assert engine.calls == 2


def test_header_is_removed_when_the_answer_arrives(monkeypatch):
    _, mw = token_mw(monkeypatch, FakeEngine())
    req = api_request()
    asyncio.run(mw.process_request(req))
    mw.process_response(req, json_response(req, 200))
    assert b"Authorization" not in req.headers


def test_wrong_credentials_fail_the_client_without_retrying(monkeypatch):
    engine = FakeEngine(status=401)
    crawler, mw = token_mw(monkeypatch, engine)
    closed = []

    async def close_spider_async(reason):
        closed.append(reason)

    engine.close_spider_async = close_spider_async

    async def scenario():
        for client in ("acme-corp", "acme-corp", "globex"):
            with pytest.raises(AuthenticationFailed, match="credentials refused"):
                await mw.process_request(api_request(client))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert engine.calls == 2  # once per client, never again
    assert closed == ["auth_failed"]  # closed once no client was left
    assert crawler.stats.get_value("adcrawler/auth_failed") == 2


def test_a_200_that_is_not_json_is_retried_when_json_is_expected():
    crawler = make_crawler()
    mw = build_from_crawler(BackoffRetryMiddleware, crawler)
    req = api_request()
    req.meta["adcrawler_expect_json"] = True
    page = TextResponse(req.url, status=200, body=b"<html>Bad gateway</html>", request=req)
    assert isinstance(asyncio.run(mw.process_response(req, page)), Request)
    plain = api_request()
    other = TextResponse(plain.url, status=200, body=b"<html/>", request=plain)
    assert asyncio.run(mw.process_response(plain, other)) is other
    assert crawler.stats.get_value("adcrawler/client/acme-corp/retries/invalid_json") == 1


def test_a_stopping_crawl_sends_nothing_more():
    from adcrawler.middlewares.ratebudget import ShuttingDown
    from adcrawler.stats import RunStats

    running = [True]
    crawler = make_crawler()
    mw = RateBudgetMiddleware(1, 60, 5, 300, 1, 30, RunStats(crawler.stats), running=lambda: running[0])

    async def scenario():
        await mw.process_request(api_request())  # takes the only place
        waiting = asyncio.ensure_future(mw.process_request(api_request()))
        await asyncio.sleep(0.05)
        running[0] = False
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(waiting, timeout=2)  # woken within one nap, not after the window

    asyncio.run(scenario())
