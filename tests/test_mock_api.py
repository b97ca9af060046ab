"""The simulator must reproduce the platform faithfully, or crawler tests prove nothing."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from mock_api.campaigns import HOSTILE_NAMES
from mock_api.process import MockProcess
from tests.conftest import QUIET
from tests.http import basic, bearer, call, token

PASSWORD = "SuperSecret123!"


def test_starts_prints_url_first_and_hides_password():
    server = MockProcess("--time-scale", "0.01").start()  # start() reads the URL from its first line
    try:
        assert server.url.startswith("http://127.0.0.1:")
        health = call("GET", server.url + "/health").json()
        assert health["status"] == "ok" and "uptime" in health and "timestamp" in health
    finally:
        output = server.stop()
    assert "admin@mixoads.com" in output
    assert PASSWORD not in output


def test_auth_issues_bearer_token(quiet_mock):
    reply = call("POST", quiet_mock.url + "/auth/token", basic("admin@mixoads.com", PASSWORD))
    body = reply.json()
    assert reply.status == 200
    assert body["token_type"] == "Bearer" and body["access_token"]
    assert body["expires_in"] == 36  # 3600 s at time scale 0.01
    assert abs(body["issued_at"] - time.time()) < 5


@pytest.mark.parametrize("headers, message", [
    ({}, "Missing or non-Basic Authorization header"),
    ({"Authorization": "Bearer abc"}, "Missing or non-Basic Authorization header"),
    ({"Authorization": "Basic !!!not-base64"}, "Malformed Basic credentials"),
    (basic("admin@mixoads.com", "wrong"), "Invalid credentials"),
    (basic("nobody@example.com", PASSWORD), "Invalid credentials"),
])
def test_auth_rejects_bad_credentials_with_json_401(quiet_mock, headers, message):
    reply = call("POST", quiet_mock.url + "/auth/token", headers)
    assert reply.status == 401
    assert reply.json() == {"error": "Unauthorized", "message": message}


def test_several_accounts_are_accepted(mock_factory):
    server = mock_factory(*QUIET, env={"MOCK_API_ACCOUNTS": "a@x.io:pw-a,b@x.io:pw-b"})
    assert token(server.url, "a@x.io", "pw-a") and token(server.url, "b@x.io", "pw-b")
    assert call("POST", server.url + "/auth/token", basic("admin@mixoads.com", PASSWORD)).status == 401


def test_three_kinds_of_401_on_api_calls(mock_factory):
    server = mock_factory("--quiet")  # tokens live an hour, until the test ages them
    url = server.url + "/api/campaigns"
    missing = call("GET", url)
    assert missing.status == 401 and missing.json()["error"] == "Unauthorized"
    unknown = call("GET", url, bearer("forged-token"))
    assert unknown.status == 401 and unknown.json()["error"] == "Unauthorized"
    tok = token(server.url)
    assert call("GET", url, bearer(tok)).status == 200
    assert call("POST", server.url + "/__mock__/expire").status == 200
    expired = call("GET", url, bearer(tok))
    body = expired.json()
    assert expired.status == 401
    assert body["error"] == "Token expired" and body["expired_at"].endswith("Z")


def test_eleventh_call_in_a_window_gets_one_429_with_retry_after(mock_factory):
    server = mock_factory("--quiet")  # the real clock: eleven calls fit in a minute on any machine
    tok = token(server.url)
    replies = [call("GET", server.url + "/api/campaigns", bearer(tok, "acme")) for _ in range(11)]
    statuses = [r.status for r in replies]
    assert statuses == [200] * 10 + [429]
    assert replies[-1].headers["Retry-After"] == "60"
    assert replies[-1].json() == {"error": "Rate limit exceeded", "message": "Too many requests: 10 per 60s",
                                  "retry_after": 60}
    # Another client has its own budget.
    assert call("GET", server.url + "/api/campaigns", bearer(tok, "other")).status == 200
    assert server.stats()["total_429"] == 1


def test_the_window_rolls_on():
    from mock_api.window import Window

    window = Window(limit=2, window=60)
    assert [window.admit(t) for t in (0, 1, 2, 59.9, 60, 61, 61)] == [True, True, False, False, True, True, False]


def test_failed_and_hanging_requests_still_spend_budget(mock_factory):
    server = mock_factory("--quiet", "--list-503-rate", "1")
    tok = token(server.url)
    statuses = [call("GET", server.url + "/api/campaigns", bearer(tok)).status for _ in range(11)]
    assert statuses == [503] * 10 + [429]


def _quirk_statuses(server: MockProcess, url: str, n: int, headers: dict) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(call("GET", url, headers, timeout=0.5))
        except OSError:
            out.append("hang")
    return out


def test_quirks_mode_reproduces_the_inherited_simulator(mock_factory):
    server = mock_factory("--quirks", "--time-scale", "0.1")  # a 6 s window outlasts the hang below
    headers = bearer("anything-goes")  # tokens are not validated
    replies = _quirk_statuses(server, server.url + "/api/campaigns?page=1&limit=1000", 11, headers)
    statuses = [r if r == "hang" else r.status for r in replies]
    # One counter over list calls: every 10th hangs, every other 5th is a 503, then the budget is spent.
    assert statuses == [200, 200, 200, 200, 503, 200, 200, 200, 200, "hang", 429]
    assert "Retry-After" not in replies[-1].headers
    assert replies[-1].json() == {"error": "Rate limit exceeded", "message": "Too many requests. Limit: 10 per minute",
                                  "retry_after": 6}
    page = replies[0].json()
    assert len(page["data"]) == 1000  # limit unbounded: 900 invented campaigns
    assert page["data"][-1]["id"] == "campaign_1000"
    assert page["pagination"] == {"page": 1, "limit": 1000, "total": 100, "has_more": True}
    first = page["data"][0]
    assert first["budget"] == 1100 and first["status"] == "active" and first["created_at"].endswith("Z")
    # Metrics drawn independently: clicks above impressions happen.
    records = [c for r in replies if r != "hang" and r.status == 200 for c in r.json()["data"]]
    assert any(c["clicks"] > c["impressions"] or c["conversions"] > c["clicks"] for c in records)
    assert all(0 <= c["impressions"] < 10000 and 0 <= c["clicks"] < 500 and 0 <= c["conversions"] < 50
               for c in records)


def test_quirks_pages_past_the_end_and_any_sync(mock_factory):
    server = mock_factory("--quirks", "--time-scale", "0.01", "--rate-limit", "100")
    headers = bearer("x", "acme")
    past = call("GET", server.url + "/api/campaigns?page=11&limit=10", headers).json()
    assert [c["id"] for c in past["data"]] == [f"campaign_{n}" for n in range(101, 111)]
    assert past["pagination"]["has_more"] is False and past["pagination"]["total"] == 100
    odd = call("GET", server.url + "/api/campaigns?page=abc&limit=zero", headers).json()
    assert odd["pagination"]["page"] == 1 and len(odd["data"]) == 10  # parseInt(...) || default
    synced = call("POST", server.url + "/api/campaigns/campaign_5000/sync", headers)
    assert synced.status == 200 and synced.json()["campaign_id"] == "campaign_5000"
    assert call("GET", server.url + "/api/campaigns", {}).status == 401  # a Bearer header is still needed
    assert server.stats()["served"]["acme"][:2] == ["campaign_1", "campaign_10"]


def test_quirks_token_clock_is_shared(mock_factory):
    server = mock_factory("--quirks")  # tokens live an hour, until the test ages them
    url = server.url + "/api/campaigns"
    assert call("GET", url, bearer("never-issued")).status == 200  # the clock starts with the server
    assert call("POST", server.url + "/__mock__/expire").status == 200
    expired = call("GET", url, bearer("never-issued"))
    assert expired.status == 401 and expired.json()["error"] == "Token expired"
    token(server.url)  # any new token renews every token
    assert call("GET", url, bearer("never-issued")).status == 200


def test_limit_is_capped_and_has_more_follows_total(mock_factory):
    server = mock_factory(*QUIET, "--max-page-size", "30", "--rate-limit", "100")
    tok = token(server.url)
    pages = [call("GET", f"{server.url}/api/campaigns?page={p}&limit=500", bearer(tok)).json() for p in (1, 4, 5)]
    assert [len(p["data"]) for p in pages] == [30, 10, 0]
    assert [p["pagination"]["has_more"] for p in pages] == [True, False, False]
    assert pages[0]["pagination"] == {"page": 1, "limit": 30, "total": 100, "has_more": True}
    default = call("GET", f"{server.url}/api/campaigns", bearer(tok)).json()
    assert [c["id"] for c in default["data"]] == [f"campaign_{n}" for n in range(1, 11)]


@pytest.mark.parametrize("query", ["page=abc", "page=0", "limit=-1", "limit=ten"])
def test_malformed_page_or_limit_is_400(quiet_mock, query):
    tok = token(quiet_mock.url)
    reply = call("GET", f"{quiet_mock.url}/api/campaigns?{query}", bearer(tok))
    assert reply.status == 400 and reply.json()["error"] == "Bad Request"


def test_sync_answers_and_is_counted_per_campaign(quiet_mock):
    tok = token(quiet_mock.url)
    url = quiet_mock.url + "/api/campaigns/campaign_7/sync"
    first = call("POST", url, bearer(tok, "acme"))
    body = first.json()
    assert first.status == 200 and body["success"] is True and body["campaign_id"] == "campaign_7"
    assert body["synced_at"].endswith("Z")
    call("POST", url, bearer(tok, "acme"))
    assert call("POST", quiet_mock.url + "/api/campaigns/campaign_999/sync", bearer(tok, "acme")).status == 404
    assert call("POST", quiet_mock.url + "/api/campaigns/nope/sync", bearer(tok, "acme")).status == 404
    stats = quiet_mock.stats()
    assert stats["syncs"] == {"acme": {"campaign_7": 2}}
    assert stats["requests"]["acme"]["sync"] == {"200": 2, "404": 2}
    quiet_mock.reset()
    assert quiet_mock.stats()["syncs"] == {}


def test_sync_takes_the_scaled_delay(mock_factory):
    server = mock_factory(*QUIET, "--time-scale", "0.1")  # 2 s -> 0.2 s
    tok = token(server.url)
    began = time.monotonic()
    assert call("POST", server.url + "/api/campaigns/campaign_1/sync", bearer(tok)).status == 200
    assert time.monotonic() - began >= 0.2


def test_campaigns_are_deterministic_and_metrics_grow(quiet_mock):
    tok = token(quiet_mock.url)
    url = quiet_mock.url + "/api/campaigns?limit=100"
    first, second = (call("GET", url, bearer(tok, "acme")).json()["data"] for _ in range(2))
    other = call("GET", url, bearer(tok, "globex")).json()["data"]
    c1, c2 = first[0], second[0]
    assert set(c1) == {"id", "name", "status", "budget", "impressions", "clicks", "conversions", "created_at"}
    assert c1["id"] == "campaign_1" and c1["name"] == "Campaign 1" and c1["status"] == "active"
    assert (c1["budget"], c1["created_at"]) == (c2["budget"], c2["created_at"])
    assert c2["impressions"] > c1["impressions"]
    assert other[0]["budget"] != c1["budget"]
    assert all(0 <= c["conversions"] <= c["clicks"] <= c["impressions"] for c in first + second)


def test_hostile_names_and_special_records(mock_factory):
    server = mock_factory(*QUIET, "--hostile-names", "7", "--malformed", "8", "--out-of-range", "4",
                          "--implausible", "4", "--unknown-statuses", "3", "--unknown-fields")
    tok = token(server.url)
    data = call("GET", server.url + "/api/campaigns?limit=100", bearer(tok)).json()["data"]
    assert [c["name"] for c in data[:7]] == HOSTILE_NAMES
    assert data[7]["name"] == "Campaign 8" and data[7]["objective"] == "CONVERSIONS"
    statuses, implausible, out_of_range, malformed = data[81:84], data[84:88], data[88:92], data[92:]
    assert [c["status"] for c in statuses] == ["learning", "PAUSED_BY_POLICY", "in_review"]
    assert implausible[0]["clicks"] > implausible[0]["impressions"]
    assert implausible[1]["conversions"] > implausible[1]["clicks"]
    assert out_of_range[0]["budget"] == 1e30 and out_of_range[1]["impressions"] == 10**20
    assert malformed[0]["id"] == "campaign_; DROP" and "id" not in malformed[1]
    assert malformed[2] == "campaign_95"  # not an object
    assert malformed[3]["budget"] == "lots" and malformed[7]["name"] == "Bad\x00name"
    served = server.stats()["served"]["default"]
    assert len(served) == 98 and "campaign_; DROP" in served  # the bare string and the id-less record have no id


def test_numeric_strings_and_ignored_page(mock_factory):
    server = mock_factory(*QUIET, "--numeric-strings", "1", "--ignore-page", "--max-page-size", "10")
    tok = token(server.url)
    pages = [call("GET", f"{server.url}/api/campaigns?page={p}&limit=10", bearer(tok)).json() for p in (1, 5)]
    assert pages[0]["data"] == [{**c, "impressions": c["impressions"]} for c in pages[0]["data"]]
    first = pages[0]["data"][0]
    assert isinstance(first["impressions"], str) and first["impressions"].isdigit() and isinstance(first["budget"], str)
    assert [c["id"] for c in pages[1]["data"]] == [c["id"] for c in pages[0]["data"]]  # page 5 is page 1 again
    assert pages[1]["pagination"]["has_more"] is True and pages[1]["pagination"]["page"] == 5


def test_list_garbage_is_not_json(mock_factory):
    server = mock_factory(*QUIET, "--list-garbage-rate", "1")
    reply = call("GET", server.url + "/api/campaigns", bearer(token(server.url)))
    assert reply.status == 200 and reply.body.startswith(b"<html>")


def test_token_endpoint_fails_like_any_other(mock_factory):
    auth = basic("admin@mixoads.com", PASSWORD)
    for fault, expected in (("503", 503), ("429", 429), ("401", 401), ("garbage", 200)):
        server = mock_factory(*QUIET, f"--auth-{fault}-rate", "1")
        reply = call("POST", server.url + "/auth/token", auth)
        assert reply.status == expected
        assert server.stats()["tokens_issued"] == 0
    assert call("POST", server.url + "/auth/token", auth).body.startswith(b"<html>")
    reset = mock_factory(*QUIET, "--auth-reset-rate", "1")
    with pytest.raises(OSError):
        call("POST", reset.url + "/auth/token", auth)
    # The default profile fails the token endpoint too, modestly.
    default = mock_factory("--time-scale", "0.01", "--seed", "3")
    statuses = []
    for _ in range(200):
        try:
            statuses.append(call("POST", default.url + "/auth/token", auth, timeout=0.2).status)
        except OSError:
            statuses.append("hang")
    assert 0.05 < statuses.count(503) / 200 < 0.16
    assert statuses.count(429) > 0 and statuses.count("hang") > 0
    assert statuses.count(200) > 150


def test_revoked_tokens_are_refused(mock_factory):
    server = mock_factory(*QUIET)
    tok = token(server.url)
    assert call("GET", server.url + "/api/campaigns", bearer(tok)).status == 200
    call("POST", server.url + "/__mock__/revoke")
    refused = call("GET", server.url + "/api/campaigns", bearer(tok))
    assert refused.status == 401 and refused.json()["error"] == "Unauthorized"
    assert call("GET", server.url + "/api/campaigns", bearer(token(server.url))).status == 200
    flaky = mock_factory(*QUIET, "--sync-401-rate", "1")
    tok = token(flaky.url)
    assert call("POST", flaky.url + "/api/campaigns/campaign_1/sync", bearer(tok)).status == 401
    assert call("GET", flaky.url + "/api/campaigns", bearer(tok)).status == 401  # revoked for good


def test_gzip_answers_when_asked(mock_factory):
    server = mock_factory(*QUIET, "--gzip", "--rate-limit", "1")
    tok = token(server.url)
    headers = {**bearer(tok), "Accept-Encoding": "gzip"}
    assert call("GET", server.url + "/api/campaigns", headers).headers.get("Content-Encoding") == "gzip"
    limited = call("GET", server.url + "/api/campaigns", headers)
    assert limited.status == 429 and limited.headers.get("Content-Encoding") == "gzip"


def _statuses(server: MockProcess, client: str, n: int) -> list[int | str]:
    tok = token(server.url)
    out: list[int | str] = []
    for _ in range(n):
        try:
            out.append(call("GET", server.url + "/api/campaigns", bearer(tok, client), timeout=0.3).status)
        except OSError:
            out.append("timeout")
    return out


def test_same_seed_gives_same_faults(mock_factory):
    args = ("--time-scale", "0.01", "--rate-limit", "1000", "--list-hang-rate", "0.1", "--list-503-rate", "0.3")
    a = _statuses(mock_factory(*args, "--seed", "42"), "acme", 30)
    b = _statuses(mock_factory(*args, "--seed", "42"), "acme", 30)
    c = _statuses(mock_factory(*args, "--seed", "7"), "acme", 30)
    assert a == b
    assert a != c
    assert {503, 200, "timeout"} <= set(a)


def test_fault_rates_follow_their_knobs(mock_factory):
    server = mock_factory(*QUIET, "--rate-limit", "10000", "--seed", "1", "--list-503-rate", "0.2")
    statuses = _statuses(server, "acme", 400)
    assert 0.14 < statuses.count(503) / 400 < 0.26
    tok = token(server.url)
    assert all(call("POST", f"{server.url}/api/campaigns/campaign_{n}/sync", bearer(tok)).status == 200
               for n in range(1, 21))


def test_hanging_request_does_not_block_others(mock_factory):
    server = mock_factory(*QUIET, "--list-hang-rate", "1")
    tok = token(server.url)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            hung = asyncio.create_task(session.get(server.url + "/api/campaigns", headers=bearer(tok)))
            await asyncio.sleep(0.1)
            async with session.post(server.url + "/api/campaigns/campaign_1/sync", headers=bearer(tok)) as r:
                status = r.status
            assert not hung.done()
            hung.cancel()
            return status

    assert asyncio.run(scenario()) == 200
    assert server.stats()["requests"]["default"]["list"] == {"hang": 1}


def test_a_thousand_concurrent_connections(mock_factory):
    server = mock_factory(*QUIET, "--time-scale", "0.5", "--rate-limit", "100000")  # each sync holds 1 s
    tok = token(server.url)

    async def scenario():
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:
            async def one(n):
                async with s.post(f"{server.url}/api/campaigns/campaign_{n % 100 + 1}/sync",
                                  headers=bearer(tok, f"c{n // 100}")) as r:
                    return r.status
            return await asyncio.gather(*(one(n) for n in range(1000)))

    statuses = asyncio.run(scenario())
    assert statuses.count(200) == 1000
    assert server.stats()["peak_concurrency"] >= 900


def test_rate_knobs_from_flags_and_environment(mock_factory):
    server = mock_factory(*QUIET, "--time-scale", "1", "--rate-limit", "3", "--rate-window", "30",
                          "--retry-after", "5")
    tok = token(server.url)
    replies = [call("GET", server.url + "/api/campaigns", bearer(tok)) for _ in range(4)]
    assert [r.status for r in replies] == [200, 200, 200, 429]
    assert replies[-1].headers["Retry-After"] == "5" and replies[-1].json()["retry_after"] == 5
    assert replies[-1].json()["message"] == "Too many requests: 3 per 30s"

    from_env = mock_factory(*QUIET, env={"MOCK_API_RATE_LIMIT": "2", "MOCK_API_CAMPAIGNS": "7"})
    tok = token(from_env.url)
    replies = [call("GET", from_env.url + "/api/campaigns?limit=100", bearer(tok)) for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 429]
    assert replies[0].json()["pagination"]["total"] == 7


def test_bad_knob_is_refused_at_start():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mock_api", "--list-503-rate", "1.5"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not a probability" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "mock_api", "--sync-503-rate", "0.7", "--sync-hang-rate", "0.7"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "sync fault rates add up to 1.4" in proc.stderr


def test_numeric_strings_combine_with_every_block_of_special_records(mock_factory):
    """Numbers as text on implausible, out-of-range and malformed records: each page is served."""
    mock = mock_factory(*QUIET, "--campaigns", "20", "--numeric-strings", "1", "--implausible", "5",
                        "--out-of-range", "4", "--malformed", "3")
    tok = token(mock.url)
    reply = call("GET", mock.url + "/api/campaigns?page=1&limit=20", bearer(tok, "demo"))
    assert reply.status == 200, reply.body[:300]
    records = [r for r in reply.json()["data"] if isinstance(r, dict)]
    implausible = {r["id"]: r for r in records if r.get("id") in {f"campaign_{n}" for n in range(9, 14)}}
    assert len(implausible) == 5
    assert all(isinstance(r["clicks"], str) for r in implausible.values())  # the block's numbers, as text
    assert int(implausible["campaign_9"]["clicks"]) > int(implausible["campaign_9"]["impressions"])
