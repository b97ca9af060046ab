"""A scheduler that releases a client's request only when its rate budget admits it, so the downloader
holds only requests on the wire; clients are served in turn, those sharing a platform budget draw from
one, and every answer's rate-limit headers are read here, once, as they arrive."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.utils.asyncio import CallLaterResult, call_later

from adcrawler.budget import RollingWindowBudget, read_signals
from adcrawler.config import scaled, value
from adcrawler.ledger import RunLedger
from adcrawler.retry import (
    BACKOFF,
    CLIENT,
    GIVEN_UP,
    NOT_BEFORE,
    PAUSE,
    PROBE,
    RETRY_AFTER_MAX,
    RETRY_CODES,
    SIGNALS,
    TOKEN_FOR,
    Outage,
)
from adcrawler.stats import RunStats

logger = logging.getLogger(__name__)

Timer = Callable[..., CallLaterResult]  # (delay, function, *args) -> a cancellable call
TICK = 0.001  # ready times are rounded up to it
CEILING = 10  # a platform's headers may raise a budget to ten times the configured limit, no further
LEAST_WINDOW = 1.0  # a stated window shorter than a second cannot be meant (real seconds, scaled)
HELD = "_adcrawler_held_since"  # set while the request holds a budget place
SEQ = "_adcrawler_seq"  # arrival order, kept when a request comes back
READY = "_adcrawler_ready_at"  # when it joined its client's queue
STATUS = "_adcrawler_status"  # the HTTP status of its answer, if one came


class BudgetScheduler:
    def __init__(self, crawler: Crawler, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 timer: Timer = call_later):
        s = crawler.settings
        self.crawler = crawler
        self.limit = limit
        self.window = window
        self.ceiling = CEILING * limit
        self.wait_cap = scaled(s, RETRY_AFTER_MAX)  # the longest time a platform's signal is believed for
        self.least_window = scaled(s, LEAST_WINDOW)
        outage = (scaled(s, value(s, "ADCRAWLER_OUTAGE_LIMIT")), (scaled(s, BACKOFF[0]), scaled(s, BACKOFF[1])))
        self.outages: defaultdict[str, Outage] = defaultdict(lambda: Outage(*outage))  # by client
        self.wall = time.time  # Unix time, for resets given as epochs
        self.clock = clock
        self.timer = timer  # with the clock, injected by tests: waits never depend on real time
        self.stats = RunStats(crawler)
        self.ledger = RunLedger.of(crawler)
        self.budgets: defaultdict[str, RollingWindowBudget] = defaultdict(  # by budget key
            lambda: RollingWindowBudget(self.limit, self.window, self.clock, ceiling=self.ceiling))
        self.shares: dict[str, str] = {}  # client -> the key of the budget it draws from
        self._members: dict[str, list[str]] = {}  # budget key -> the clients drawing from it
        self._moved: set[str] = set()  # clients that moved to a platform's partition
        self._last_sent: dict[str, int] = {}  # client -> when it last sent, in sends (turns in a shared budget)
        self._reported: dict[str, tuple[int, float]] = {}  # budget key -> the limit last said
        self._queues: dict[str, list[tuple[int, int, Request]]] = {}
        self._ready: list[tuple[float, int, str]] = []  # (ready at, tie-break, client), one entry per client
        self._in_ready: set[str] = set()
        self._sleeping: dict[int, tuple[Request, CallLaterResult]] = {}
        self._queued = 0
        self._seq = itertools.count()
        self._timer: CallLaterResult | None = None
        self._timer_at = math.inf  # when _timer fires; inf while there is none

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BudgetScheduler":
        s = crawler.settings
        scheduler = cls(crawler, value(s, "ADCRAWLER_RATE_LIMIT"), scaled(s, value(s, "ADCRAWLER_RATE_WINDOW")))
        crawler.signals.connect(scheduler.response_downloaded, signal=signals.response_downloaded)
        crawler.signals.connect(scheduler.request_left_downloader, signal=signals.request_left_downloader)
        crawler.signals.connect(scheduler.headers_received, signal=signals.headers_received)
        return scheduler

    # -- the scheduler interface -----------------------------------------------
    def close(self, reason: str) -> None:
        for _, call in self._sleeping.values():
            call.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if len(self):
            logger.info("Scheduler closed with %d requests never sent (%s)", len(self), reason)

    def has_pending_requests(self) -> bool:
        return len(self) > 0

    def __len__(self) -> int:
        return self._queued + len(self._sleeping)

    def enqueue_request(self, request: Request) -> bool:
        client = request.meta.get(CLIENT) or ""
        pause = request.meta.pop(PAUSE, None)
        if pause is not None and client:
            self._rate_limited(client, pause)
        delay = request.meta.pop(NOT_BEFORE, None)
        if delay and delay > 0:
            self._sleeping[id(request)] = (request, self.timer(delay, self._wake_with, id(request)))
            return True
        if SEQ not in request.meta:
            request.meta[SEQ] = next(self._seq)
        request.meta[READY] = self.clock()
        heapq.heappush(self._queues.setdefault(client, []), (-request.priority, request.meta[SEQ], request))
        self._queued += 1
        self._mark_ready(client, self.clock())
        return True

    def next_request(self) -> Request | None:
        now = self.clock()
        while self._ready and self._ready[0][0] <= now:
            _, _, client = heapq.heappop(self._ready)
            self._in_ready.discard(client)
            queue = self._queues.get(client)
            if not queue:
                continue
            outage = self.outages[client]
            if outage.over(now):
                lasted = now - (outage.since or now)
                self.ledger.unavailable(client, self.wall() - lasted, lasted)
            given_up = self.ledger.runs[client].unavailable if client in self.ledger.runs else None
            if given_up:  # what waits goes to its errback at once, unbudgeted: its campaign is stored as failed
                _, _, request = heapq.heappop(queue)
                self._queued -= 1
                if queue:
                    self._mark_ready(client, now)
                request.meta[GIVEN_UP] = given_up
                return request
            if not self.ledger.may_send(client):
                # The run stopped working for this client (its lock was lost, its platform
                # unavailable...): what waits is never sent.
                self._queued -= len(queue)
                queue.clear()
                continue
            wait = outage.wait(now)
            if wait > 0:  # one probe at a time, one per backoff: its answer wakes the client
                self._mark_ready(client, now + wait)
                continue
            wait = self.budget(client).wait_time() if client else 0.0
            if wait == math.inf and not self.budget(client).in_flight:
                # Only an answer wakes a budget that waits for one; with none in flight, nothing
                # would: wait a window instead (an invariant, not a path taken in normal operation).
                wait = self.budget(client).window
            if client:
                self._report(client, "quiet windows")  # a lowered limit probed back up
            if wait > 0:  # at inf, a finishing request wakes it (request_left_downloader)
                self._mark_ready(client, now + wait)
                continue
            _, _, request = heapq.heappop(queue)
            self._queued -= 1
            if queue:
                self._mark_ready(client, now)  # behind the clients that were ready before it
            waited = now - request.meta.pop(READY, now)
            if client:
                self.budget(client).acquire(client)
                self._last_sent[client] = next(self._seq)
                request.meta[HELD] = now
                if outage.sent():
                    request.meta[PROBE] = True
                    logger.debug("Client %s: probing with %s", client, request.url, extra={"client": client})
                self.ledger.sent(client)
                if waited > 0:
                    self.stats.inc("rate_wait_seconds", client, round(waited, 3))
            return request
        self._arm()
        return None

    # -- budget places ---------------------------------------------------------
    def budget(self, client: str) -> RollingWindowBudget:
        if client not in self.shares:
            run = self.ledger.runs.get(client)
            group = run.client.budget if run is not None else None
            self.shares[client] = f"group:{group}" if group else f"client:{client}"
            self._members.setdefault(self.shares[client], []).append(client)
        return self.budgets[self.shares[client]]

    def sharing(self, client: str) -> list[str]:
        """The clients drawing from ``client``'s budget, itself included."""
        return self._members.get(self.shares.get(client, ""), [client])

    def headers_received(self, headers: Any, body_length: int, request: Request, spider: Any = None) -> None:
        """Every answer's rate-limit signals, read once as its headers arrive (before any middleware):
        kept in meta for the retry policy, followed by the budget of an API call."""
        client = request.meta.get(CLIENT) or request.meta.get(TOKEN_FOR)
        if not client:
            return
        said = request.meta[SIGNALS] = read_signals(headers.get, self.wall(), self.wait_cap, self.least_window)
        if HELD not in request.meta:
            return  # a token request: not budgeted
        for name in said.malformed:
            self.stats.inc("rate_signals_malformed", client, reason=name)
        if said.partition:
            self._share(client, f"partition:{said.partition}")
        self.budget(client).observe(said)
        self._report(client, "the platform says")
        self._wake(client)

    def _share(self, client: str, key: str) -> None:
        """``client`` draws from the budget ``key`` from now on, taking only its own places (in flight,
        sent and finished in the window): the budget it leaves keeps the others' and its state."""
        if self.budget(client) is self.budgets.get(key):
            return
        places = self.budget(client).take(client)
        old = self.shares[client]
        self._members[old].remove(client)
        if not self._members[old]:
            del self._members[old]
            self.budgets.pop(old, None)
        self.shares[client] = key
        self._members.setdefault(key, []).append(client)
        self.budgets[key].give(places)
        if self._members.get(old):  # the clients left behind may have room now
            self._wake(self._members[old][0])
        # The partition key is the platform's and may name an account: logged as a digest; a
        # client that moves again (a platform rebalancing its accounts) is said at DEBUG.
        logger.log(logging.DEBUG if client in self._moved else logging.INFO,
                   "Client %s shares one platform budget (%s) with %s", client,
                   hashlib.sha1(key.encode()).hexdigest()[:8],
                   ", ".join(c for c in self.sharing(client) if c != client) or "no other client yet",
                   extra={"client": client})
        self._moved.add(client)

    def _report(self, client: str, why: str) -> None:
        """The limit in force, when it changed, in the stats of every client drawing from it and in the log."""
        budget = self.budget(client)
        now = (budget.limit, budget.window)
        if self._reported.get(self.shares[client], (self.limit, self.window)) == now:
            return
        self._reported[self.shares[client]] = now
        for sharer in self.sharing(client):
            self.stats.set("rate_limit_effective", budget.limit, sharer)
            self.stats.set("rate_window_effective", budget.window, sharer)
        logger.info("Client %s: %d requests per %gs from now (%s; configured: %d per %gs)", client, budget.limit,
                    budget.window, why, self.limit, self.window, extra={"client": client})

    def _wake(self, client: str) -> None:
        """Whoever waits on ``client``'s budget is ready again when it next has room: the
        clients sharing it in turn, the one that sent least recently first."""
        budget = self.budget(client)
        for sharer in sorted(self.sharing(client), key=lambda c: self._last_sent.get(c, -1)):
            if self._queues.get(sharer) and sharer not in self._in_ready:
                self._mark_ready(sharer, self.clock() + budget.wait_time())
        self._arm()

    def response_downloaded(self, response: Any, request: Request, spider: Any = None) -> None:
        if HELD in request.meta:
            request.meta[STATUS] = response.status

    def request_left_downloader(self, request: Request, spider: Any = None) -> None:
        sent = request.meta.pop(HELD, None)
        if sent is None:
            return
        client = request.meta[CLIENT]
        self._observe(client, request.url, request.meta.pop(STATUS, None), request.meta.get(PROBE, False))
        self.budget(client).release(self.clock() - sent, client)
        # The lower bound of a client's run ends with its last answer's latency.
        self.ledger.answered(client, self.clock() - sent)
        self._wake(client)

    def _observe(self, client: str, url: str, status: int | None, probe: bool) -> None:
        """An API call's end, for the client's outage: an answer (a 429 included: the platform is
        there), or a transient failure (no answer, or a status worth a retry)."""
        outage = self.outages[client]
        if status is not None and status not in RETRY_CODES:
            if outage.answered():
                logger.info("Client %s: the platform answers again", client, extra={"client": client})
            return
        was = outage.on
        outage.failed(self.clock(), url, probe)
        if outage.on and not was:
            self.stats.inc("outages", client)
            logger.warning("Client %s: %d different requests in a row got no answer: the platform seems down; one "
                           "request at a time goes until it answers, for up to %.0fs", client, len(outage.failing),
                           outage.limit, extra={"client": client})

    def _rate_limited(self, client: str, pause: float) -> None:
        budget = self.budget(client)
        if budget.rate_limited(pause):
            logger.warning("Client %s: the platform's limit is lower than %d per %gs: halved until quiet windows "
                           "show more room", client, self.limit, budget.window, extra={"client": client})
            self._report(client, "a 429")
        self._wake(client)

    # -- waking the engine -------------------------------------------------------
    def _mark_ready(self, client: str, when: float) -> None:
        if client in self._in_ready or when == math.inf:
            return
        # To the millisecond: clients due at the same moment (sharing a budget) are
        # served in the order they became ready, not by the clock's last digits.
        when = math.ceil(when / TICK) * TICK
        heapq.heappush(self._ready, (when, next(self._seq), client))
        self._in_ready.add(client)

    def _wake_with(self, key: int) -> None:
        self._hand_back(self._sleeping.pop(key)[0])

    def _arm(self) -> None:
        """Make sure the engine asks again when the earliest waiting client is due."""
        if not self._ready or self._timer_at <= self._ready[0][0]:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self._ready[0][0]
        self._timer = self.timer(max(0.0, self._timer_at - self.clock()), self._due)

    def _due(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self.clock()
        while self._ready and self._ready[0][0] <= now:
            client = self._ready[0][2]
            queue = self._queues.get(client)
            if queue:
                # Take the client's next request out and give it back: it lands
                # in the same place, and the engine asks for requests again.
                _, _, request = heapq.heappop(queue)
                self._queued -= 1
                self._hand_back(request)
                return
            heapq.heappop(self._ready)
            self._in_ready.discard(client)
        self._arm()

    def _hand_back(self, request: Request) -> None:
        try:
            self.crawler.engine.crawl(request)
        except RuntimeError:  # the spider is closing: nothing more is sent
            pass
