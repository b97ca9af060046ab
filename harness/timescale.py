"""Crawler settings for a platform whose clock runs ``scale`` times real time.

The simulator's ``--time-scale`` shrinks the rate window, the sync delay, the
token lifetime and Retry-After together; the crawler's windows, timeouts and
backoffs must shrink by the same factor, or a compressed run proves nothing.
Used by the demo, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

# Loopback and the event loop add milliseconds that do not shrink with the
# clock; timeouts below this would fire on healthy requests.
MIN_TIMEOUT = 0.25


def crawler_env(scale: float, rate_limit: int = 10, rate_window: float = 60.0) -> dict[str, str]:
    def s(seconds: float, floor: float = 0.0) -> str:
        return repr(max(seconds * scale, floor))

    return {
        "ADCRAWLER_RATE_LIMIT": str(rate_limit),
        "ADCRAWLER_RATE_WINDOW": s(rate_window),
        "ADCRAWLER_RETRY_AFTER_MAX": s(300),
        "ADCRAWLER_RETRY_BACKOFF_BASE": s(1),
        "ADCRAWLER_RETRY_BACKOFF_MAX": s(30),
        "ADCRAWLER_TIMEOUT_AUTH": s(10, MIN_TIMEOUT),
        "ADCRAWLER_TIMEOUT_LIST": s(15, MIN_TIMEOUT),
        "ADCRAWLER_TIMEOUT_SYNC": s(10, MIN_TIMEOUT),
        "ADCRAWLER_TOKEN_REFRESH_MARGIN": s(60),
        "ADCRAWLER_DB_FLUSH_INTERVAL": s(5),
        "ADCRAWLER_PROGRESS_INTERVAL": s(30, 1.0),
    }
