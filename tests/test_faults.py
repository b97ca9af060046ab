"""The fault matrix: every endpoint x every fault x both backends, and a platform that is not there.

Each cell runs the real crawl against a simulator that fails one endpoint in
one way, a third of the time (the token endpoint refusing good credentials:
every time), and asserts what a user sees: every campaign the platform served
is stored exactly once or quarantined with a reason, the outcome and the exit
status say what happened, and no secret reaches any output.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from harness.runner import DEMO_PASSWORD, run_crawl, start_crawl
from mock_api.config import ENDPOINTS, FAULTS
from mock_api.process import MockProcess
from tests.conftest import assert_every_served_id_kept, free_port, last_line, read_until, wait_for

CLIENT = "acme-corp"
BASIC = "U3VwZXJTZWNyZXQxMjMh"  # base64 of the demo password


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_fault_matrix(mock_factory, db, endpoint, fault):
    refused = (endpoint, fault) == ("auth", "401")
    rate = "1" if refused else "0.3"
    # Seed 33: the first call to each endpoint draws a fault, so every cell meets its fault.
    mock = mock_factory("--time-scale", "0.01", "--quiet", "--seed", "33", "--campaigns", "12",
                        "--max-page-size", "5", f"--{endpoint}-{fault}-rate", rate)
    result = run_crawl(mock.url, "acme", db.workdir, database_url=db.url, timeout=180,
                       extra_env={"LOG_LEVEL": "DEBUG"})
    platform = mock.stats()
    answered = platform["requests"].get(CLIENT, {}).get(endpoint, {})
    if refused:
        assert result.returncode == 1 and result.stat("outcome", CLIENT) == "failed"
        assert answered == {"401": 1} and "list" not in platform["requests"][CLIENT]  # no retry storm
        assert "credentials refused" in last_line(result)
        assert db.scalar("SELECT COUNT(*) FROM campaigns") == 0
    else:
        assert answered.get(fault, 0) > 0, answered  # the fault happened
        assert result.returncode == 0, result.output[-3000:]
        assert result.stat("outcome", CLIENT) == "succeeded" and "Sync complete" in last_line(result)
        assert_every_served_id_kept(mock, db, CLIENT)
        assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 12
        assert db.scalar("SELECT COUNT(*) FROM rejected_records") == 0
        assert set(platform["syncs"][CLIENT]) == {f"campaign_{n}" for n in range(1, 13)}
    outputs = result.output + json.dumps(result.stats, default=str) + json.dumps(
        db.rows("SELECT * FROM sync_runs"), default=str)
    for secret in [DEMO_PASSWORD, BASIC, *platform["tokens"]]:
        assert secret not in outputs


def test_a_platform_that_is_not_there_fails_the_client_with_the_reason(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    # A timeout long enough to see the refusal (Twisted reports it after a few tenths of a second);
    # the outage waited out for 2 s (at 0.01), one token request per backoff (0.01 s to 0.3 s).
    result = run_crawl(url, "acme", tmp_path, timeout=120,
                       extra_env={"ADCRAWLER_TIMEOUT_AUTH": "500", "ADCRAWLER_OUTAGE_LIMIT": "200"})
    assert result.returncode == 1
    assert re.search(r"acme-corp: failed \(platform unavailable since \d\d:\d\d:\d\d UTC: token endpoint "
                     r"DownloadConnectionRefusedError, \d+ attempts\)$", last_line(result)), last_line(result)
    assert 6 <= result.stat("token_retries", CLIENT) <= 25
    assert result.elapsed < 60


def test_a_platform_that_comes_back_is_used_as_soon_as_it_answers(tmp_path):
    port = free_port()
    # At time scale 0.1 the token request's backoffs (0.05 s to 3 s) outlast the simulator's start.
    crawl = start_crawl(f"http://127.0.0.1:{port}", "acme", tmp_path, scale=0.1)
    try:
        early = read_until(crawl, "Token request failed", 60)  # refused meanwhile; the token request backs off
        with MockProcess("--time-scale", "0.1", "--quiet", "--campaigns", "10", port=port) as mock:
            out, _ = crawl.communicate(timeout=120)
            out = early + out
            syncs = mock.stats()["syncs"].get(CLIENT, {})
    finally:
        if crawl.poll() is None:
            crawl.kill()
    assert crawl.returncode == 0, out[-3000:]
    assert "Token request failed (DownloadConnectionRefusedError" in out
    assert len(syncs) == 10


def test_a_gzipped_429_body_is_read_for_its_wait(mock_factory, tmp_path):
    # The inherited platform says how long to wait in the body only; gzip it.
    mock = mock_factory("--quirks", "--gzip", "--time-scale", "0.01", "--campaigns", "30", "--sync-429-rate", "0.3",
                        "--seed", "5")
    result = run_crawl(mock.url, "acme", tmp_path, extra_env={"LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.output[-3000:]
    waits = [line for line in result.output.splitlines() if "pausing the client for" in line]
    assert waits and all("pausing the client for 0.60s" in line for line in waits)  # retry_after 60 x 0.01


# -- outages: the platform answers nothing, its token endpoint included -----------------------

def _outage_503s(mock) -> int:
    return sum(n for endpoints in mock.stats()["requests"].values() for e in endpoints.values()
               for status, n in e.items() if status == "outage")


def test_a_token_outage_at_the_start_is_waited_out_and_the_run_succeeds(mock_factory, tmp_path):
    """Minutes at the real clock (1.5 s at 0.01, from the first failure): the token endpoint is
    tried once per backoff, and the run goes on when it answers."""
    mock = mock_factory("--time-scale", "0.01", "--quiet", "--campaigns", "30")
    mock.outage(120)
    crawl = start_crawl(mock.url, "acme", tmp_path)
    try:
        early = read_until(crawl, "Token request failed", 60)
        time.sleep(1.5)
        mock.outage(0)
        out, _ = crawl.communicate(timeout=120)
    finally:
        if crawl.poll() is None:
            crawl.kill()
    out = early + out
    assert crawl.returncode == 0 and "Sync complete: 1 client(s) succeeded" in out, out[-3000:]
    assert len(mock.stats()["syncs"][CLIENT]) == 30
    tried = mock.stats()["requests"][CLIENT]["auth"]
    assert tried["outage"] <= 20 and tried["200"] == 1, tried  # probes, not a storm
    assert " ERROR: " not in out


@pytest.mark.parametrize("seconds", [1.5, 60])
def test_an_outage_mid_run_costs_the_outage_not_the_run(mock_factory, tmp_path, seconds):
    """Every call answers 503 for 150 s at the real clock (1.5 s here), or for longer than the
    outage limit (10 min: 6 s here): one probe per backoff, then the run goes on; or the client ends
    within the limit, with one line that says since when."""
    mock = mock_factory("--time-scale", "0.01", "--quiet", "--campaigns", "100")
    crawl = start_crawl(mock.url, "acme", tmp_path)
    try:
        wait_for(lambda: len(mock.stats()["syncs"].get(CLIENT, {})) >= 20, 60, "twenty syncs")
        mock.outage(seconds)
        down = time.monotonic()
        out, _ = crawl.communicate(timeout=120)
        ended = time.monotonic() - down
    finally:
        if crawl.poll() is None:
            crawl.kill()
    failed = _outage_503s(mock)
    syncs = mock.stats()["syncs"][CLIENT]
    # The budget in flight (10) fails, then one request at a time: a probe per backoff (0.01 s
    # doubling to 0.3 s), never a retry of each request.
    assert failed <= 10 + 5 + seconds / 0.15 + 5 if seconds < 6 else failed <= 10 + 5 + 6 / 0.15 + 5, failed
    said = out.splitlines()
    # Once, or again after a call sent before the outage was answered in it.
    assert 1 <= sum("the platform seems down" in line for line in said) <= 3, out[-3000:]
    assert "Gave up retrying" not in out
    if seconds < 6:
        assert crawl.returncode == 0 and "Sync complete: 1 client(s) succeeded" in out, out[-3000:]
        assert len(syncs) == 100 and "the platform answers again" in out
        assert [line for line in said if " ERROR: " in line] == []
    else:
        assert crawl.returncode == 1, out[-3000:]
        assert re.search(r"acme-corp: partial \(.*platform unavailable since \d\d:\d\d:\d\d UTC", out.splitlines()[-1])
        assert 6 <= ended <= 6 + 10  # the limit, and the calls in flight then
        assert sum("platform unavailable since" in line for line in said) == 2  # the line saying so, the last
        assert len(syncs) < 100
