"""Throwaway PostgreSQL databases for the tests and the benchmarks: created on the
server that ``PG_TEST_DSN`` names (the local one by default), dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

ADMIN_DSN = os.environ.get("PG_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str, admin_dsn: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_dsn, connect_timeout=5)
    conn.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_database(prefix: str = "adcrawler_test", admin_dsn: str = ADMIN_DSN) -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"', admin_dsn)
    return name, f"{admin_dsn.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str, admin_dsn: str = ADMIN_DSN) -> None:
    """Drop it, whoever is still connected (a new admin connection: the server may have restarted)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin_dsn)


@contextmanager
def throwaway_database(prefix: str = "adcrawler_test", admin_dsn: str = ADMIN_DSN) -> Iterator[str]:
    name, url = create_database(prefix, admin_dsn)
    try:
        yield url
    finally:
        drop_database(name, admin_dsn)
