"""Read what the crawler stored, from SQLite or PostgreSQL alike."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


class Db:
    def __init__(self, workdir: Path, url: str = ""):
        self.workdir = workdir
        self.url = url

    @property
    def kind(self) -> str:
        return "postgresql" if self.url else "sqlite"

    def rows(self, sql: str, params: tuple = ()) -> list[tuple[Any, ...]]:
        if self.url:
            import psycopg2

            conn = psycopg2.connect(self.url)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                conn.commit()  # a test's own change (RETURNING what it changed) stays made
                return rows
            finally:
                conn.close()
        conn = sqlite3.connect(self.workdir / "adcrawler.sqlite3")
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def scalar(self, sql: str, params: tuple = ()) -> Any:
        return self.rows(sql, params)[0][0]

    @staticmethod
    def json(value: Any) -> Any:
        """A JSON column's value: PostgreSQL gives it decoded, SQLite as text."""
        return json.loads(value) if isinstance(value, str) else value
