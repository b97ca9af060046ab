"""One client's campaign list (pure logic): a page read record by record, so that a record past a JSON
parser's limit costs that record, not its page; and when to stop, believing what the platform serves
over what its pagination says."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NOT_JSON = object()

_DECODER = json.JSONDecoder(parse_float=Decimal)
_SPACE = re.compile(r"[ \t\n\r]*")
# One token of JSON text: a string, a bracket or separator, or a bare scalar (number, true...).
_TOKEN = re.compile(r'[ \t\n\r]*("(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^ \t\n\r\[\]{}:,"]+)', re.S)


class LimitExceeded(Exception):
    """The value is JSON, but deeper or with longer numbers than the parser reads."""


@dataclass(frozen=True)
class Entry:
    """One element of ``data``: its text as sent, and its value, or why it has none."""

    text: str
    value: Any = None
    error: str | None = None  # the parser limit it hit; ``value`` is then None
    id: Any = None  # hostile entries: the id at its top level, when there is one


@dataclass
class Page:
    entries: list[Entry] | None = None  # None: no ``data`` list on the page
    fields: dict[str, Any] = field(default_factory=dict)  # the other top-level values (pagination...)


def decode(text: str, start: int = 0) -> tuple[Any, int]:
    """The JSON value at ``start`` and where it ends; :class:`LimitExceeded` for a parser limit,
    ``json.JSONDecodeError`` for a syntax error."""
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise LimitExceeded("nested deeper than the parser reads") from None
    except ValueError as exc:  # Python's limit on the digits of an integer
        raise LimitExceeded(f"a number longer than the parser reads ({str(exc).split(':')[0]})") from None


def read_page(body: bytes | str) -> Page | object:
    """The page in ``body``, or :data:`NOT_JSON` when it is not JSON, or not a JSON object."""
    try:
        text = body if isinstance(body, str) else body.decode(json.detect_encoding(body))
    except (UnicodeDecodeError, LookupError):
        return NOT_JSON
    text = text.removeprefix("\ufeff")
    try:
        return _object(text)
    except (json.JSONDecodeError, SyntaxError):
        return NOT_JSON


def _skip(text: str, i: int) -> int:
    return _SPACE.match(text, i).end()


def _expect(text: str, i: int, chars: str) -> tuple[str, int]:
    i = _skip(text, i)
    if i >= len(text) or text[i] not in chars:
        raise SyntaxError(f"expected one of {chars!r} at {i}")
    return text[i], i + 1


def _object(text: str) -> Page:
    page = Page()
    _, i = _expect(text, 0, "{")
    i = _skip(text, i)
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            i = _skip(text, i)
            if not text.startswith('"', i):
                raise SyntaxError("an object key is not a string")
            key, i = decode(text, i)
            _, i = _expect(text, i, ":")
            i = _skip(text, i)
            if key == "data" and text.startswith("[", i):
                page.entries, i = _entries(text, i + 1)
            else:
                try:
                    page.fields[key], i = decode(text, i)
                except LimitExceeded:
                    i, _ = scan(text, i)
                    page.fields[key] = None  # unusable, like a missing field
            sep, i = _expect(text, i, ",}")
            if sep == "}":
                break
    if _skip(text, i) != len(text):
        raise SyntaxError("text after the JSON value")
    return page


def _entries(text: str, i: int) -> tuple[list[Entry], int]:
    entries: list[Entry] = []
    i = _skip(text, i)
    if text.startswith("]", i):
        return entries, i + 1
    while True:
        start = _skip(text, i)
        try:
            value, i = decode(text, start)
            entries.append(Entry(text[start:i], value))
        except LimitExceeded as exc:
            i, found_id = scan(text, start)
            entries.append(Entry(text[start:i], error=str(exc), id=found_id))
        sep, i = _expect(text, i, ",]")
        if sep == "]":
            return entries, i


def scan(text: str, i: int) -> tuple[int, Any]:
    """Skip the JSON value at ``i`` without a stack: (where it ends, its top-level ``id`` if a scalar).
    Only the brackets' balance and the strings' ends are checked: the value is kept as text."""
    depth, key, expect_key, found = 0, None, False, None
    while True:
        m = _TOKEN.match(text, i)
        if m is None:
            raise SyntaxError(f"unreadable JSON at {i}")
        token, i = m.group(1), m.end()
        if token in ("{", "["):
            depth += 1
            expect_key = token == "{" and depth == 1
        elif token in ("}", "]"):
            depth -= 1
            if depth < 0:
                raise SyntaxError("unbalanced brackets")
        elif depth == 1 and token == ",":
            expect_key = True
        elif depth == 1 and token == ":":
            pass
        elif depth == 1 and expect_key:
            key, expect_key = (json.loads(token) if token.startswith('"') else None), False
        elif depth == 1 and key == "id" and found is None:
            try:
                found = json.loads(token)
            except ValueError:
                found = None
        if depth == 0:
            return i, found


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
