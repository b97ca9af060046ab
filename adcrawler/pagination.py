"""The campaign list of one client, page by page: what to keep, when to stop (pure logic).

A platform's pagination cannot be trusted: ``has_more`` may stay true past the
end, ``limit`` may be capped without saying so or ignored, ``total`` may be
missing or wrong, a page past the end may be filled with invented campaigns, a
page may be served again whatever ``page`` says, and the list may shift so
that a campaign shows up on two pages. So the listing believes what it sees:

- every distinct record served is kept, quarantined ones included (a
  record's identity is its id as sent, else its content); records beyond an
  announced ``total`` too: they are counted (``beyond``) and the client's log
  says the platform is inconsistent, but a wrong ``total`` never drops a
  record that was sent;
- the page size is the one the platform applied: the records a page brought
  when that is fewer than asked and the platform says there is more, else the
  ``limit`` it echoes (if smaller than asked), else the one asked for;
- with a ``total``, no page is asked for past it: the listing stops once that
  many distinct records are seen, when the next page would start past it, or
  after ceil(total / page size) + 2 pages whatever ``has_more`` says (a
  platform that fills pages past its end with invented campaigns, as the
  inherited one does, is not followed there);
- without a ``total``, the listing goes on while full pages bring new records
  and ``has_more`` is not false;
- it always stops at an empty page, ``has_more`` false, a page without a new
  record (a warning: the platform repeats itself), a short page, or
  ``max_campaigns`` distinct records (``truncated``: the client is partial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Listing:
    page_size: int  # the limit we ask for
    max_campaigns: int = 10_000  # the bound on one client's listing (ADCRAWLER_MAX_CAMPAIGNS)
    total: int | None = None  # what the platform announced
    applied: int | None = None  # the page size the platform applied (known after the first full page)
    pages: int = 0
    beyond: int = 0  # records kept beyond the announced total
    keys: dict[str, str] = field(default_factory=dict)  # record key -> its content's digest
    stop_reason: str | None = None  # why the listing ended, when it is not the normal end
    truncated: bool = False  # stopped by max_campaigns with more to list

    def admit(self, key: str, digest: str = "") -> str:
        """``new``, ``duplicate`` (seen on an earlier page, the same content) or ``changed``
        (seen before with other contents: the list shifted while it was read); a new record
        beyond the announced total is counted in ``beyond``."""
        if key in self.keys:
            if self.keys[key] == digest:
                return "duplicate"
            self.keys[key] = digest
            return "changed"
        self.keys[key] = digest
        if self.total is not None and len(self.keys) > self.total:
            self.beyond += 1
        return "new"

    def announce(self, total: object) -> None:
        """Take the page's ``total`` when it is a usable count (the first one wins)."""
        if self.total is None and isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            self.total = total

    def next_page(self, page: int, received: int, new: int, limit: object, has_more: object) -> int | None:
        """After ``page`` brought ``received`` records of which ``new`` were new:
        the page to ask for next, or None when the listing is complete."""
        self.pages += 1
        total = self.total
        more_said = has_more is True or (total is not None and len(self.keys) < total)
        if self.applied is None and received:
            echoed = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
            size = min(self.page_size, echoed) if echoed else self.page_size
            self.applied = received if received < size and more_said else size
        applied = max(self.applied or self.page_size, received)
        if received == 0 or has_more is False:
            return None
        if len(self.keys) >= self.max_campaigns:
            self.truncated = True
            self.stop_reason = f"stopped at {self.max_campaigns} campaigns (ADCRAWLER_MAX_CAMPAIGNS)"
            return None
        if total is not None:
            if len(self.keys) >= total or page * applied >= total:
                return None
            if self.pages >= math.ceil(total / applied) + 2:
                self.stop_reason = f"gave up after {self.pages} pages"
                return None
        if new == 0:
            self.stop_reason = f"page {page} brought no new campaign"
            return None
        if received < applied and total is None:
            return None
        return page + 1

    @property
    def seen(self) -> int:
        return len(self.keys)

    @property
    def missing(self) -> int:
        """Announced campaigns never listed."""
        return max(0, (self.total or 0) - len(self.keys))
