"""Storage: one schema, two backends, the same upsert semantics.

``DATABASE_URL`` empty (or ``sqlite:///path``) = an SQLite file, the embedded
default; ``postgresql://...`` = PostgreSQL through psycopg2. Every call here is
blocking: the crawler runs it off the event loop, in a worker thread.
"""

from __future__ import annotations

from .base import BatchResult, Store, StoreError, WriteResult, first_line


def open_store(database_url: str | None, sqlite_path: str) -> Store:
    url = (database_url or "").strip()
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if not url or url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///"):] if url else sqlite_path)
    raise StoreError("DATABASE_URL must start with postgresql:// or sqlite:/// (or be empty for SQLite)")


__all__ = ["BatchResult", "Store", "StoreError", "WriteResult", "first_line", "open_store"]
