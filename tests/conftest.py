"""Shared fixtures: a real simulator process and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from mock_api.process import MockProcess

PG_ADMIN_DSN = os.environ.get("ADCRAWLER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

# Faults off, fast clock: for tests about one behaviour at a time.
QUIET = ("--time-scale", "0.01", "--quiet")


@pytest.fixture
def mock_factory() -> Iterator:
    """Start simulators with given flags; all are stopped at the end of the test."""
    started: list[MockProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> MockProcess:
        server = MockProcess(*args, env=env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def quiet_mock(mock_factory) -> MockProcess:
    return mock_factory(*QUIET)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new PostgreSQL database, dropped after the test.

    Without a server the test is skipped on a laptop but fails under CI.
    """
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    admin.autocommit = True
    name = f"adcrawler_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        # A new connection: a test may have restarted the server meanwhile.
        admin = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The crawler's database, once per backend."""
    from tests.db import Db

    if request.param == "sqlite":
        return Db(tmp_path)
    return Db(tmp_path, request.getfixturevalue("pg_url"))
