"""Storage: one schema, two backends, the same upsert semantics.

``DATABASE_URL`` empty (or ``sqlite:///path``) = an SQLite file, the embedded
default; ``postgresql://...`` = PostgreSQL through psycopg2. Every call here is
blocking: the crawler runs it off the event loop, in a worker thread.
"""

from __future__ import annotations

from typing import Any

from .base import BatchResult, RunOrigin, SchemaBehind, Store, StoreError, Waits, WriteResult, first_line


def waits_of(settings: Any) -> Waits:
    """The bounds on database waits that the settings give."""
    from adcrawler.config import value

    return Waits(value(settings, "ADCRAWLER_DB_STATEMENT_TIMEOUT"), value(settings, "ADCRAWLER_DB_LOCK_TIMEOUT"))


def open_store(database_url: str | None, sqlite_path: str, waits: Waits = Waits(), name: str = "adcrawler") -> Store:
    """The store ``DATABASE_URL`` names; every wait of its statements is bounded by ``waits``;
    ``name`` tells the connections apart on the server (PostgreSQL's application_name)."""
    url = (database_url or "").strip()
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, waits, name)
    if not url or url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):] if url else sqlite_path, waits)
    raise StoreError("DATABASE_URL must start with postgresql:// or sqlite:/// (or be empty for SQLite)")


__all__ = ["BatchResult", "RunOrigin", "SchemaBehind", "Store", "StoreError", "Waits", "WriteResult", "first_line", "open_store",
           "waits_of"]
