"""Request fingerprints that tell clients apart.

Two clients' sync calls for ``campaign_1`` share method and URL; only the
``X-Client-ID`` header differs. Scrapy's default fingerprint ignores headers,
so its duplicate filter would drop the second client's call.
"""

from __future__ import annotations

from scrapy import Request
from scrapy.utils.request import fingerprint


class ClientAwareFingerprinter:
    def fingerprint(self, request: Request) -> bytes:
        return fingerprint(request, include_headers=("X-Client-ID",))
