"""When to try again: one policy for every attempt, and the one place retries are counted.

Whatever failed (an API answer or exception, a token request, a database
write, a sync that ran out of retries and waits for another pass), the verdict
of :mod:`adcrawler.answers` goes to :meth:`RetryPolicy.delay`, which says
whether to try again and after how long. Each kind of retry has its own
budget, all of them settings:

============  ======================================  ==============================
kind          what                                    limit
============  ======================================  ==============================
transient     5xx, timeout, dropped connection,       ADCRAWLER_RETRY_TIMES (or the
              non-JSON answer of an API call          request's ``max_retry_times``)
rate_limited  429 on an API call                      ADCRAWLER_RATE_429_RETRIES
reauth        401 on an API call (token refused)      ADCRAWLER_REAUTH_RETRIES
token         a token request that failed (not        ADCRAWLER_RETRY_TIMES
              refused)
database      a batch write the database could not    ADCRAWLER_DB_RETRIES
              take (unreachable, timeout)
============  ======================================  ==============================

The wait is the platform's Retry-After when it said one, else a capped
exponential backoff with jitter (``ADCRAWLER_RETRY_BACKOFF_*``; for the
database ``ADCRAWLER_DB_RETRY_BACKOFF_*``); a re-authentication goes again at
once. An API call retried goes through Scrapy's ``get_retry_request`` (its
``retry/count``, ``retry/reason_count/<reason>`` and ``retry/max_reached``
stats, and its log lines), 429s and re-authentications included. Our stats
follow one scheme, ``<prefix>retries/<reason>``: ``retries`` for API calls,
``token_retries`` and ``db_retries``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scrapy import Request
from scrapy.downloadermiddlewares.retry import get_retry_request

from adcrawler.answers import Decision, Verdict
from adcrawler.config import value
from adcrawler.meta import ATTEMPTS, CLIENT, ENDPOINT, NOT_BEFORE, PAUSE, VERDICT
from adcrawler.stats import RunStats

KINDS = ("transient", "rate_limited", "reauth", "token", "database")
_API_KINDS = {Verdict.RETRY: "transient", Verdict.RATE_LIMITED: "rate_limited", Verdict.REAUTH: "reauth"}
_STAT = {"auth": "token_retries", "database": "db_retries"}  # the rest: "retries"


@dataclass(frozen=True)
class RetryPolicy:
    limits: Mapping[str, int]  # kind -> retries allowed
    backoff: Mapping[str, tuple[float, float]]  # kind -> (base, cap) of the backoff

    @classmethod
    def from_settings(cls, settings: Any) -> "RetryPolicy":
        api = (value(settings, "ADCRAWLER_RETRY_BACKOFF_BASE"), value(settings, "ADCRAWLER_RETRY_BACKOFF_MAX"))
        db = (value(settings, "ADCRAWLER_DB_RETRY_BACKOFF_BASE"), value(settings, "ADCRAWLER_DB_RETRY_BACKOFF_MAX"))
        retries = value(settings, "ADCRAWLER_RETRY_TIMES")
        return cls(
            limits={"transient": retries, "rate_limited": value(settings, "ADCRAWLER_RATE_429_RETRIES"),
                    "reauth": value(settings, "ADCRAWLER_REAUTH_RETRIES"), "token": retries,
                    "database": value(settings, "ADCRAWLER_DB_RETRIES")},
            backoff={**dict.fromkeys(KINDS, api), "database": db},
        )

    @staticmethod
    def kind(what: str, decision: Decision) -> str | None:
        """The retry budget an attempt at ``what`` (``list``, ``sync``, ``auth`` or
        ``database``) draws from, or None when its verdict is not worth another try."""
        if what == "database":
            return "database" if decision.verdict is Verdict.RETRY else None
        if what == "auth":
            return "token" if decision.verdict in (Verdict.RETRY, Verdict.RATE_LIMITED) else None
        return _API_KINDS.get(decision.verdict)

    def delay(self, what: str, decision: Decision, attempt: int, limit: int | None = None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1 = the first) of ``what``,
        or None: give up. ``limit`` overrides the kind's limit (a request's own)."""
        kind = self.kind(what, decision)
        if kind is None or attempt > (self.limits[kind] if limit is None else limit):
            return None
        if kind == "reauth":
            return 0.0  # a new token is all it needs
        base, cap = self.backoff[kind]
        return decision.delay(attempt, base, cap)

    def worth_another_pass(self, what: str, decision: Decision | None) -> bool:
        """A request given up on (out of retries, ``decision`` its last verdict):
        is another pass over it, later in the run, worth it?"""
        return decision is not None and self.kind(what, decision) is not None

    def count(self, stats: RunStats, what: str, decision: Decision, client: str | None) -> None:
        """Record one retry of ``what``."""
        stats.inc(_STAT.get(what, "retries"), client, reason=decision.reason)


def retry_request(request: Request, decision: Decision, policy: RetryPolicy, stats: RunStats,
                  spider: Any) -> Request | None:
    """The copy of an API ``request`` to send again after ``decision``, carrying
    its wait in meta for the scheduler; or None, with the verdict left in
    ``meta["adcrawler_verdict"]`` for whoever handles the failure."""
    what, client = request.meta.get(ENDPOINT, ""), request.meta.get(CLIENT)
    kind = policy.kind(what, decision)
    attempts = dict(request.meta.get(ATTEMPTS) or {})
    attempt = attempts.get(kind, 0) + 1
    limit = request.meta.get("max_retry_times") if kind == "transient" else None
    wait = policy.delay(what, decision, attempt, limit) if kind else None
    tried = request.meta.get("retry_times", 0)
    if wait is None:
        request.meta[VERDICT] = decision
        if kind:  # Scrapy's "Gave up retrying" line and retry/max_reached
            get_retry_request(request, spider=spider, reason=decision.reason, max_retry_times=tried)
        return None
    # Allowed one more whatever RETRY_TIMES says: the policy has decided.
    again = get_retry_request(request, spider=spider, reason=decision.reason, max_retry_times=tried + 1)
    assert again is not None
    attempts[kind] = attempt
    again.meta[ATTEMPTS] = attempts
    again.meta[PAUSE if kind == "rate_limited" else NOT_BEFORE] = wait
    policy.count(stats, what, decision, client)
    return again

