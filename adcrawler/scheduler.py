"""A scheduler that releases a client's request only when its rate budget admits it.

Every request carrying ``meta["adcrawler_client"]`` waits here, in its
client's queue (highest priority first, then first come), until that client's
rolling-window budget (:mod:`adcrawler.ratelimit`) has a free place. So the
downloader only ever holds requests that are on the wire, and
``CONCURRENT_REQUESTS`` counts those: a client waiting for its budget never
takes a place another client could use. Clients are served in the order they
became ready, one request at a time, so all of them progress from the first
minute whatever order their lists arrive in.

A place is held from the moment the request leaves this scheduler until a
window after its answer arrived (``request_left_downloader``): the platform
counts the request somewhere in between, so its window never holds more of our
requests than ours does.

The budget follows what the platform says of its limits (rate-limit headers,
read on every answer as its headers arrive, 429s and errors included; see
:mod:`adcrawler.ratesignals` and :mod:`adcrawler.ratelimit`), up to
``ADCRAWLER_RATE_LIMIT_CEILING``. Clients that share one platform budget draw
from one :class:`RollingWindowBudget`: those of one ``budget`` group in the
client registry from the start, and those whose answers name the same
partition key (``pk``) from the answer that says so (the places they hold
move with them). Clients sharing a budget take turns: each is ready again
behind the others.

Two meta keys, set by the retry middleware, ask for waits:

- ``adcrawler_not_before`` (seconds from now): a backoff; the request sleeps
  outside the queues and comes back through the engine when due;
- ``adcrawler_pause`` (seconds): the platform answered 429; the whole client
  pauses that long and its limit is lowered (see ``RollingWindowBudget``).

A client the run ledger says may no longer send (its lock was lost, see
:mod:`adcrawler.ledger`) has its waiting requests dropped, never sent.

The engine asks for requests when a download finishes; when only the budget
can wake a client, a timer hands one of its requests back through
``engine.crawl()``, the engine's public way in, which also makes it ask again.

Nothing is written to ``JOBDIR``: a resumed run lists again and learns from
the database what is done (see :mod:`adcrawler.jobdir`). Requests are not
de-duplicated here: the spider never asks twice for the same campaign.

Settings: ADCRAWLER_RATE_LIMIT, ADCRAWLER_RATE_WINDOW, ADCRAWLER_RATE_LIMIT_CEILING, ADCRAWLER_RETRY_AFTER_MAX.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.utils.asyncio import CallLaterResult, call_later

from adcrawler.config import value
from adcrawler.ledger import RunLedger
from adcrawler.meta import CLIENT, HELD, NOT_BEFORE, PAUSE, READY, SEQ
from adcrawler.ratelimit import RollingWindowBudget
from adcrawler.ratesignals import read_signals
from adcrawler.stats import RunStats

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

Timer = Callable[..., CallLaterResult]  # (delay, function, *args) -> a cancellable call
TICK = 0.001  # ready times are rounded up to it


class BudgetScheduler:
    def __init__(self, crawler: Crawler, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 timer: Timer = call_later, ceiling: int | None = None, wait_cap: float = 300.0,
                 wall: Callable[[], float] = time.time):
        self.crawler = crawler
        self.limit = limit
        self.window = window
        self.ceiling = ceiling
        self.wait_cap = wait_cap  # the longest wait a platform's signal is believed for
        self.wall = wall  # Unix time, for resets given as epochs
        self.clock = clock
        self.timer = timer  # with the clock, injected by tests: waits never depend on real time
        self.stats = RunStats(crawler)
        self.ledger = RunLedger.of(crawler)
        self.budgets: dict[str, RollingWindowBudget] = {}  # by budget key
        self.shares: dict[str, str] = {}  # client -> the key of the budget it draws from
        self._members: dict[str, list[str]] = {}  # budget key -> the clients drawing from it
        self._last_sent: dict[str, int] = {}  # client -> when it last sent, in sends (turns in a shared budget)
        self._reported: dict[str, tuple[int, float]] = {}  # budget key -> the limit last said
        self._queues: dict[str, list[tuple[int, int, Request]]] = {}
        self._ready: list[tuple[float, int, str]] = []  # (ready at, tie-break, client), one entry per client
        self._in_ready: set[str] = set()
        self._sleeping: dict[int, tuple[Request, CallLaterResult]] = {}
        self._queued = 0
        self._seq = itertools.count()
        self._timer: CallLaterResult | None = None
        self._timer_at = math.inf

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BudgetScheduler":
        s = crawler.settings
        scheduler = cls(crawler, value(s, "ADCRAWLER_RATE_LIMIT"), value(s, "ADCRAWLER_RATE_WINDOW"),
                        ceiling=value(s, "ADCRAWLER_RATE_LIMIT_CEILING"),
                        wait_cap=value(s, "ADCRAWLER_RETRY_AFTER_MAX"))
        crawler.signals.connect(scheduler.request_left_downloader, signal=signals.request_left_downloader)
        crawler.signals.connect(scheduler.headers_received, signal=signals.headers_received)
        return scheduler

    # -- the scheduler interface -----------------------------------------------
    def close(self, reason: str) -> None:
        for _, call in self._sleeping.values():
            call.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._queued or self._sleeping:
            logger.info("Scheduler closed with %d requests never sent (%s)", self._queued + len(self._sleeping),
                        reason)

    def has_pending_requests(self) -> bool:
        return bool(self._queued or self._sleeping)

    def __len__(self) -> int:
        return self._queued + len(self._sleeping)

    def enqueue_request(self, request: Request) -> bool:
        client = request.meta.get(CLIENT) or ""
        pause = request.meta.pop(PAUSE, None)
        if pause is not None and client:
            self._rate_limited(client, pause)
        delay = request.meta.pop(NOT_BEFORE, None)
        if delay and delay > 0:
            self._sleep(request, delay)
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
            if not self.ledger.may_send(client):
                # The run stopped working for this client (its lock was lost...):
                # what waits is never sent.
                self._queued -= len(queue)
                queue.clear()
                continue
            wait = self.budget(client).wait_time() if client else 0.0
            if wait == math.inf and not self.budget(client).in_flight:
                # Only an answer wakes a budget that waits for one; with none in flight, nothing
                # would: wait a window instead (an invariant, not a path taken in normal operation).
                wait = self.budget(client).window
            if client:
                self._report(client, "quiet windows")  # a lowered limit probed back up
            if wait > 0:
                if wait < math.inf:  # else a finishing request wakes it (request_left_downloader)
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
        key = self.shares[client]
        if key not in self.budgets:
            self.budgets[key] = RollingWindowBudget(self.limit, self.window, self.clock, ceiling=self.ceiling)
        return self.budgets[key]

    def sharing(self, client: str) -> list[str]:
        """The clients drawing from ``client``'s budget, itself included."""
        return self._members.get(self.shares.get(client, ""), [client])

    def headers_received(self, headers: Any, body_length: int, request: Request, spider: Any = None) -> None:
        """Every answer's rate-limit signals, as its headers arrive (before any middleware)."""
        client = request.meta.get(CLIENT)
        if not client or HELD not in request.meta:
            return
        # A window shorter than a second of the platform's minute cannot be meant (the configured window
        # is the platform's minute, however fast its clock runs).
        said = read_signals(headers.get, self.wall(), self.wait_cap, least=self.window / 60)
        for name in said.malformed:
            self.stats.inc("rate_signals_malformed", client, reason=name)
        if said.partition:
            self._share(client, f"partition:{said.partition}")
        self.budget(client).observe(said)
        self._report(client, "the platform says")
        self._wake(client)

    def _share(self, client: str, key: str) -> None:
        """``client`` draws from the budget ``key`` from now on. Only its own places (its
        requests in flight, its sends and finishes in the window) move with it: the budget it
        leaves keeps the other clients' places and its own state."""
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
        if key not in self.budgets:
            self.budgets[key] = RollingWindowBudget(self.limit, self.window, self.clock, ceiling=self.ceiling)
        self.budgets[key].give(places)
        self._wake_all(old)
        # The partition key is the platform's and may name an account: logged as a digest.
        logger.info("Client %s shares one platform budget (%s) with %s", client,
                    hashlib.sha1(key.encode()).hexdigest()[:8],
                    ", ".join(c for c in self.sharing(client) if c != client) or "no other client yet",
                    extra={"client": client})

    def _wake_all(self, key: str) -> None:
        """The clients left on budget ``key`` may have room now."""
        members = self._members.get(key)
        if members:
            self._wake(members[0])

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

    def request_left_downloader(self, request: Request, spider: Any = None) -> None:
        sent = request.meta.pop(HELD, None)
        if sent is None:
            return
        client = request.meta[CLIENT]
        self.budget(client).release(self.clock() - sent, client)
        # The lower bound of a client's run ends with its last answer's latency.
        self.ledger.answered(client, self.clock() - sent)
        self._wake(client)

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

    def _sleep(self, request: Request, delay: float) -> None:
        key = id(request)
        self._sleeping[key] = (request, self.timer(delay, self._wake_with, key))

    def _wake_with(self, key: int) -> None:
        request, _ = self._sleeping.pop(key)
        self._hand_back(request)

    def _arm(self) -> None:
        """Make sure the engine asks again when the earliest waiting client is due."""
        if not self._ready:
            return
        when = self._ready[0][0]
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.timer(max(0.0, when - self.clock()), self._due)

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
