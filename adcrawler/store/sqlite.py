"""SQLite backend: the embedded default, a single file, zero setup."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from adcrawler.disk import private_dir

from . import Store
from .connection import StoreError, Waits, first_line

# SQLite limits the parameters of one statement; stay well below it.
_MAX_PARAMS = 30_000


class SqliteStore(Store):
    dialect = "sqlite"
    # A value no column can hold (a 64-bit overflow, text Python cannot encode), a constraint.
    refusal = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeEncodeError)

    def __init__(self, path: str, waits: Waits = Waits()):
        self.path = path
        self.waits = waits
        self._locks: dict[str, Any] = {}
        try:
            self.connect()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite database {path}: {first_line(exc)}") from None

    def cause(self, exc: BaseException) -> str:
        text = str(exc).lower()
        for words, cause in (("locked", "lock timeout"), ("interrupted", "statement timeout"),
                             ("readonly", "permission"), ("full", "disk"), ("disk i/o", "disk")):
            if words in text:
                return cause
        return "connection"

    def connect(self) -> None:
        if self.path != ":memory:":
            private_dir(Path(self.path).parent)
        # Used from a worker thread, one call at a time. isolation_level=None:
        # transactions are begun explicitly (see _begin), DDL included.
        self.conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.waits.lock, isolation_level=None)
        # Switching a new file to WAL needs it to itself, and SQLite does not wait
        # for that (no busy handler): several processes opening a fresh file at
        # once must take turns.
        deadline = time.monotonic() + self.waits.lock
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def _begin(self, cur: Any, kind: str) -> None:
        # IMMEDIATE takes the write lock up front (waiting up to the timeout), so a
        # transaction never fails half-way on a lock upgrade; EXCLUSIVE also keeps
        # readers out while the schema changes.
        cur.execute({"read": "BEGIN", "write": "BEGIN IMMEDIATE", "migrate": "BEGIN EXCLUSIVE"}[kind])

    def _timestamp(self, value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    def _lock_path(self, client: str) -> Path:
        # Beside the file itself, whatever path (symlink, relative) reached it: one file, one set of locks.
        return Path(f"{os.path.realpath(self.path)}.locks", hashlib.sha1(client.encode()).hexdigest()[:16] + ".lock")

    def try_lock(self, client: str) -> bool:
        # An OS file lock beside the database: released by the kernel if the
        # process dies, so a killed run never leaves a stale lock behind.
        if client in self._locks:
            return True  # this store holds it already
        path = self._lock_path(client)
        private_dir(path.parent)
        fh = path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._locks[client] = fh
        return client not in self.locks_lost()  # lost: the file was replaced while we took it

    def locks_lost(self) -> dict[str, str]:
        # The lock is on the file we opened: it is lost when that file is no longer the one at
        # the path (removed, replaced), where another run would take a new one.
        lost = {}
        for client, fh in list(self._locks.items()):
            try:
                same = os.stat(self._lock_path(client)).st_ino == os.fstat(fh.fileno()).st_ino
            except OSError:
                same = False
            if not same:
                lost[client] = "its lock file was replaced: another run may be syncing it"
                fh.close()
                del self._locks[client]
        return lost

    def close(self) -> None:
        self.drop()
        for fh in self._locks.values():
            fh.close()  # closing the file releases its lock
        self._locks.clear()

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", "?")

    def _value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            # One fixed text form, so equal instants compare equal as text.
            return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        if isinstance(value, Decimal):
            return str(value)
        return value

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        out: list[tuple] = []
        width = len(rows[0])
        step = max(1, _MAX_PARAMS // width)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            marks = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * len(chunk))
            cur.execute(sql.format(values=marks), [self._value(v) for row in chunk for v in row])
            if fetch:
                out.extend(cur.fetchall())
        return out
