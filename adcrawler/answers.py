"""What to do with an answer from the platform: the one place that decides (pure logic).

Every response and every download exception of every endpoint is judged here,
once: the retry middleware and the token middleware act on the verdict, the
token refresh loop uses it for the token request, and the spider uses
:func:`json_body`, the one check of "is this JSON".

Verdicts:

- ``OK``: use the answer;
- ``RETRY``: transient (a status in ``retry_codes``, a dropped connection, a
  timeout, a 200 that is not JSON): try again after ``wait`` (the platform's
  Retry-After) or the backoff;
- ``RATE_LIMITED``: 429: pause the client for ``wait`` (or the backoff), then
  try again;
- ``REAUTH``: 401 on an API call: the token was refused (expired early,
  revoked): get a new one and send again;
- ``REFUSED``: 401 or 403 from the token endpoint: the credentials are wrong;
- ``FATAL``: anything else (404, 400, 403 on an API call, an unexpected error):
  record it, do not retry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    ResponseDataLossError,
)
from twisted.internet import error as net

from adcrawler.backoff import backoff_delay, parse_retry_after
from adcrawler.listpage import NOT_JSON, read_page


class Verdict(Enum):
    OK = "ok"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REAUTH = "reauth"
    REFUSED = "refused"
    FATAL = "fatal"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # a stat-key-safe name: http_503, invalid_json, DownloadTimeoutError...
    wait: float | None = None  # seconds the platform asked for, if it said

    def delay(self, attempt: int, base: float, cap: float) -> float:
        """Seconds to wait before attempt ``attempt``: the platform's word, else the backoff."""
        return self.wait if self.wait is not None else backoff_delay(attempt, base, cap)


# The connection or the transfer failed: nothing usable reached us, try again.
# (Scrapy's own RETRY_EXCEPTIONS; OSError covers an empty compressed body.)
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    CannotResolveHostError, DownloadConnectionRefusedError, DownloadFailedError, DownloadTimeoutError,
    ResponseDataLossError, net.ConnectionDone, net.ConnectError, net.ConnectionLost, OSError,
)


def json_body(body: bytes) -> Any:
    """The decoded JSON value, or :data:`NOT_JSON`."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return NOT_JSON


def is_json(body: bytes) -> bool:
    """Whether ``body`` is JSON. A body past a limit of the parser (nesting, digits) is JSON
    when it is a page that can be read record by record (:mod:`adcrawler.listpage`)."""
    try:
        json.loads(body)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    except (RecursionError, ValueError):
        return read_page(body) is not NOT_JSON


def decide_response(endpoint: str, status: int, retry_after: str | bytes | None, body: bytes,
                    retry_codes: frozenset[int] | set[int], now: float, cap: float) -> Decision:
    """The verdict on an answer. ``endpoint`` is ``auth``, ``list`` or ``sync``;
    ``retry_after`` the raw header; ``now`` the Unix time (for HTTP dates);
    ``cap`` the longest wait honoured."""
    if 200 <= status < 300:
        if not is_json(body):
            return Decision(Verdict.RETRY, "invalid_json")
        return Decision(Verdict.OK, "ok")
    if status == 429:
        return Decision(Verdict.RATE_LIMITED, "http_429", _wait(retry_after, body, now, cap))
    if status in (401, 403) and endpoint == "auth":
        return Decision(Verdict.REFUSED, f"http_{status}")
    if status == 401:
        return Decision(Verdict.REAUTH, "http_401")
    if status in retry_codes:
        return Decision(Verdict.RETRY, f"http_{status}", _wait(retry_after, body, now, cap))
    return Decision(Verdict.FATAL, f"http_{status}")


def decide_exception(exception: BaseException) -> Decision:
    """The verdict on a request that got no answer."""
    if isinstance(exception, TRANSIENT_EXCEPTIONS):
        return Decision(Verdict.RETRY, type(exception).__name__)
    return Decision(Verdict.FATAL, type(exception).__name__)


def _wait(header: str | bytes | None, body: bytes, now: float, cap: float) -> float | None:
    # The body is only read when the header does not say (and error bodies are small).
    from_header = parse_retry_after(header, None, now, cap)
    if from_header is not None:
        return from_header
    decoded = json_body(body)
    return parse_retry_after(None, None if decoded is NOT_JSON else decoded, now, cap)
