"""The campaign list of one client, page by page: what to keep, when to stop (pure logic).

A platform's pagination cannot be trusted: ``has_more`` may stay true past the
end, ``limit`` may be ignored or unbounded, a page past the end may be filled
with invented campaigns, a page may be served again whatever ``page`` says, and
the list may shift so that a campaign shows up on two pages. So:

- every distinct record counts toward the announced ``total``, quarantined
  ones included (a record's identity is its id as sent, else its content);
- records beyond ``total`` distinct ones are not taken (invented, or the list
  grew during the crawl: the next run gets them);
- the listing stops at the first of: ``total`` distinct records seen, a page
  without a new record (a warning: the platform repeats itself), a short page,
  ``has_more`` false, or the next page would start past ``total``; and never
  asks for more than ceil(total / page size) + 2 pages, whatever ``has_more``
  says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Listing:
    page_size: int  # the limit we ask for
    total: int | None = None  # what the platform announced
    pages: int = 0
    keys: set[str] = field(default_factory=set)
    stop_reason: str | None = None  # why the listing ended, when it is not the normal end

    def admit(self, key: str) -> str:
        """``new``, ``duplicate`` (seen on an earlier page) or ``beyond_total``."""
        if key in self.keys:
            return "duplicate"
        if self.total is not None and len(self.keys) >= self.total:
            return "beyond_total"
        self.keys.add(key)
        return "new"

    def announce(self, total: object) -> None:
        """Take the page's ``total`` when it is a usable count (the first one wins)."""
        if self.total is None and isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self.total = total

    def next_page(self, page: int, received: int, new: int, limit: object, has_more: object) -> int | None:
        """After ``page`` brought ``received`` records of which ``new`` were new:
        the page to ask for next, or None when the listing is complete."""
        self.pages += 1
        applied = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else self.page_size
        if received == 0 or has_more is False:
            return None
        if self.total is not None:
            if len(self.keys) >= self.total or page * applied >= self.total:
                return None
            if self.pages >= math.ceil(self.total / applied) + 2:
                self.stop_reason = f"gave up after {self.pages} pages"
                return None
        if new == 0:
            self.stop_reason = f"page {page} brought no new campaign"
            return None
        if received < applied:
            return None
        return page + 1

    @property
    def seen(self) -> int:
        return len(self.keys)

    @property
    def missing(self) -> int:
        """Announced campaigns never listed."""
        return max(0, (self.total or 0) - len(self.keys))
