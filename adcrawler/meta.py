"""Every ``Request.meta`` key adcrawler reads or writes, in one place.

:data:`PUBLIC` are the keys a caller may set or read (the README's meta table is
checked against it by the tests); the ``_adcrawler_*`` keys are private
bookkeeping between the scheduler and the middlewares. Scrapy's own keys that
adcrawler relies on: ``dont_retry``, ``max_retry_times``, ``download_timeout``,
``download_slot``.
"""

from __future__ import annotations

from scrapy import Request

CLIENT = "adcrawler_client"
ENDPOINT = "adcrawler_endpoint"
TOKEN_FOR = "adcrawler_token_for"
NOT_BEFORE = "adcrawler_not_before"
PAUSE = "adcrawler_pause"
ATTEMPTS = "adcrawler_attempts"
VERDICT = "adcrawler_verdict"

PUBLIC = {
    CLIENT: "the platform client id of an API call: selects its rate budget and its bearer token",
    ENDPOINT: "`auth`, `list` or `sync`: how answers are judged and counted",
    TOKEN_FOR: "on a token request, the client it is for (token requests are not budgeted)",
    NOT_BEFORE: "seconds from now before the scheduler may send the request (a retry's backoff)",
    PAUSE: "seconds the whole client pauses before this request goes again (the platform answered 429)",
    ATTEMPTS: "retries made so far, per kind (`transient`, `rate_limited`, `reauth`)",
    VERDICT: "the last verdict on the request's answer (`adcrawler.answers.Decision`), set when it is not retried",
}

# Private: set and read by one pair of components each.
TOKEN_SERIAL = "_adcrawler_token_serial"  # which token an API call was sent with (auth middleware)
HELD = "_adcrawler_held_since"  # set while the request holds a budget place (scheduler)
SEQ = "_adcrawler_seq"  # arrival order, kept when a request comes back (scheduler)
READY = "_adcrawler_ready_at"  # when it joined its client's queue (scheduler)


def client_of(request: Request) -> str | None:
    """The client a request works for: an API call's, or a token request's."""
    return request.meta.get(CLIENT) or request.meta.get(TOKEN_FOR)
