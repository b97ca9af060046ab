"""The stop rule for the campaign list (pure logic).

The platform's ``has_more`` may stay true past the end and ``limit`` may be
ignored, so we stop at the first of: ``total`` distinct campaigns collected, a
page shorter than the page size we asked for, or ``has_more`` false.
"""

from __future__ import annotations


def next_page(page: int, page_size: int, received: int, collected: int,
              total: int | None, has_more: bool | None) -> int | None:
    """The page to fetch after ``page``, or None when the list is complete.

    ``page_size`` is the limit the platform says it applied (it may cap what
    we asked), ``received`` the number of records on this page, ``collected`` the
    distinct campaigns seen so far, ``total`` and ``has_more`` what the page
    said (None when absent).
    """
    if received == 0:
        return None
    if has_more is False:
        return None
    if total is not None and collected >= total:
        return None
    if received < page_size:
        return None
    return page + 1
