"""Shared fixtures and helpers: a real simulator process, throwaway PostgreSQL
databases, a clock with timers for pure logic, and the waits of end-to-end tests."""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.pg import ADMIN_DSN as PG_ADMIN_DSN
from harness.pg import throwaway_database
from mock_api.process import MockProcess

# The simulator's time scale in end-to-end tests: the platform runs 100x faster.
SCALE = "0.01"
# Faults off, fast clock: for tests about one behaviour at a time.
QUIET = ("--time-scale", SCALE, "--quiet")


class Clock:
    """A clock that moves only when told, with timers that fire only then.

    Callable for the time (like ``time.monotonic``); ``call_later`` has the
    signature of ``scrapy.utils.asyncio.call_later``, so components that take
    a clock and a timer never depend on real time in tests."""

    class _Call:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, now: float = 1000.0):
        self.now = now
        self._due: list[tuple[float, int, Clock._Call, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, function: Callable[..., Any], *args: Any) -> "Clock._Call":
        call = Clock._Call()
        heapq.heappush(self._due, (self.now + delay, next(self._seq), call, function, args))
        return call

    def advance(self, seconds: float) -> None:
        """Move time on, firing the timers that fall due on the way, in order."""
        end = self.now + seconds
        while self._due and self._due[0][0] <= end:
            when, _, call, function, args = heapq.heappop(self._due)
            self.now = max(self.now, when)
            if not call.cancelled:
                function(*args)
        self.now = end


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it is true (returned) or ``timeout`` passes (AssertionError).

    For waiting on a real process to reach a state the simulator holds it in;
    never a guess at how long something takes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def read_until(proc: Any, text: str | tuple[str, ...], timeout: float) -> str:
    """Read a running process's output until a line holds ``text`` (a tuple: until each has
    appeared, in any order); returns what was read (the rest stays for ``communicate``)."""
    import threading

    seen: list[str] = []
    wanted = set(text) if isinstance(text, tuple) else {text}

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            wanted.difference_update({t for t in wanted if t in line})
            if not wanted:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if wanted:
        raise AssertionError(f"no line with {sorted(wanted)!r} in time; read:\n" + "".join(seen)[-3000:])
    return "".join(seen)


def last_line(result: Any) -> str:
    """The crawl's last line: the one a person reads."""
    return [line for line in result.output.splitlines() if "[adcrawler.crawl]" in line][-1]


def stored_ids(db: Any, client: str) -> set[str]:
    return {r[0] for r in db.rows("SELECT campaign_id FROM campaigns WHERE client_id = %s", (client,))}


def quarantined_ids(db: Any, client: str) -> set[str]:
    return {r[0] for r in db.rows("SELECT DISTINCT campaign_id FROM rejected_records WHERE client_id = %s "
                                  "AND campaign_id IS NOT NULL", (client,))}


def assert_every_served_id_kept(mock: Any, db: Any, client: str) -> None:
    """The distinct ids in campaigns plus quarantine are the distinct ids the platform served."""
    served = set(mock.stats()["served"].get(client, []))
    stored, quarantined = stored_ids(db, client), quarantined_ids(db, client)
    assert stored | quarantined == served, (served - stored - quarantined, (stored | quarantined) - served)
    assert not stored & quarantined


def assert_run_counts_match_rows(db: Any) -> None:
    """Every run record counts what its rows say, and the runs together inserted each campaign once."""
    runs = db.rows("SELECT run_id, client_id, campaigns_synced, campaigns_failed, rows_inserted, rows_updated, "
                   "rows_unchanged, records_rejected FROM sync_runs")
    for run_id, client, *counts in runs:
        metrics = dict(db.rows("SELECT sync_status, COUNT(*) FROM campaign_metrics WHERE run_id = %s "
                               "AND client_id = %s GROUP BY sync_status", (run_id, client)))
        changes = dict(db.rows("SELECT row_change, COUNT(*) FROM campaign_metrics WHERE run_id = %s "
                               "AND client_id = %s GROUP BY row_change", (run_id, client)))
        rejected = db.scalar("SELECT COUNT(*) FROM rejected_records WHERE run_id = %s AND client_id = %s",
                             (run_id, client))
        expected = [metrics.get("synced", 0), metrics.get("failed", 0), changes.get("inserted", 0),
                    changes.get("updated", 0), changes.get("unchanged", 0), rejected]
        assert counts == expected, (run_id, client, counts, expected)
    for client, inserted in db.rows("SELECT client_id, SUM(rows_inserted) FROM sync_runs GROUP BY client_id"):
        assert inserted == db.scalar("SELECT COUNT(*) FROM campaigns WHERE client_id = %s", (client,)), client


@pytest.fixture
def mock_factory() -> Iterator:
    """Start simulators with given flags; all are stopped at the end of the test."""
    started: list[MockProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> MockProcess:
        server = MockProcess(*args, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def quiet_mock(mock_factory) -> MockProcess:
    return mock_factory(*QUIET)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new PostgreSQL database, dropped after the test.

    Without a server the test is skipped on a laptop but fails under CI.
    """
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    admin.close()
    with throwaway_database() as url:
        yield url


@pytest.fixture(scope="session")
def egg(tmp_path_factory):
    """The project's egg, as scrapyd-deploy builds it (once per test process)."""
    from harness.scrapyd import build_egg

    return build_egg(tmp_path_factory.mktemp("egg") / "adcrawler.egg")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The crawler's database, once per backend."""
    from tests.db import Db

    if request.param == "sqlite":
        return Db(tmp_path)
    return Db(tmp_path, request.getfixturevalue("pg_url"))
