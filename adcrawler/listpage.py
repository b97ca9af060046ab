"""A list page read record by record, so that one hostile record cannot take its page down (pure logic).

``json.loads`` reads a page whole: a record nested deeper than the parser's
recursion limit, or a number with more digits than Python converts (4,300),
fails the whole page, and every good record on it with it. :func:`read_page`
reads the top-level object with the standard decoder one value at a time
(``JSONDecoder.raw_decode``, the C scanner) and each element of ``data`` on its
own. An element that hits a limit of the parser is skipped by a scanner that
keeps no stack and becomes an :class:`Entry` with the reason and, when it has
one, the ``id`` found at its top level (so the campaign can still be synced and
its quarantine row names it). A body that is not JSON at all (a syntax error,
bytes that are not text) is :data:`NOT_JSON`, a transient fault the caller
retries.

Every entry keeps its text exactly as sent (``raw``), and numbers with a
fraction are decoded as :class:`~decimal.Decimal`, so nothing is rounded
before validation decides.
"""

from __future__ import annotations

import json
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

    Checks the brackets balance and the strings close; what is between is not
    checked further (the value is only kept as text)."""
    depth, key, expect_key, found = 0, None, False, None
    while True:
        m = _TOKEN.match(text, i)
        if m is None:
            raise SyntaxError(f"unreadable JSON at {i}")
        token, i = m.group(1), m.end()
        if token in "{[" and len(token) == 1:
            depth += 1
            expect_key = token == "{" and depth == 1
        elif token in "}]" and len(token) == 1:
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
