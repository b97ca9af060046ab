"""PostgreSQL backend through psycopg2 (production)."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from . import Store
from .connection import StoreError, Waits, first_line


@dataclass
class Lease:
    """Who holds the leases this store takes ((run id, holder)), for how long, and which it holds
    (client -> when it ends by our clock, unless renewed)."""

    owner: tuple[str, str] = field(default_factory=lambda: (uuid.uuid4().hex, f"pid {os.getpid()}"))
    seconds: float = 60.0
    held: dict[str, float] = field(default_factory=dict)
    renewed: float = 0.0  # when, by our clock


class PostgresStore(Store):
    dialect = "postgresql"
    ROW_ID = "ctid"
    # Out of a column's range, text it cannot hold (a NUL is refused before it is sent: ValueError),
    # a constraint: these rows. Permission denied and the like are faults.
    refusal = (psycopg2.DataError, psycopg2.IntegrityError, UnicodeEncodeError, ValueError)
    no_privilege = (psycopg2.errors.InsufficientPrivilege,)

    def __init__(self, url: str, waits: Waits = Waits()):
        self.url = url
        self.waits = waits
        self.lease = Lease()
        try:
            self.connect()
        except psycopg2.OperationalError as exc:
            # psycopg2's message can quote the DSN; keep only its first line, which does not.
            raise StoreError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None

    def cause(self, exc: BaseException) -> str:
        return {"55P03": "lock timeout", "57014": "statement timeout", "42501": "permission",
                "53100": "disk"}.get(getattr(exc, "pgcode", None) or "", "connection")

    def connect(self) -> None:
        statement, lock = (round(seconds * 1000) for seconds in (self.waits.statement, self.waits.lock))
        # Every wait bounded: the server cancels a statement or a lock wait that runs too long,
        # and a server that stops answering is given up on by TCP.
        self.conn = psycopg2.connect(
            self.url, connect_timeout=max(1, round(self.waits.statement)), application_name="adcrawler",
            options=f"-c statement_timeout={statement} -c lock_timeout={lock}",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3, tcp_user_timeout=statement)

    def _begin(self, cur: Any, kind: str) -> None:
        # psycopg2 opens the transaction itself; migrations also wait for each other on a
        # transaction-level advisory lock (released at commit).
        if kind == "migrate":
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('adcrawler:migrate', 0))")

    def lease_as(self, run_id: str, holder: str, seconds: float) -> None:
        self.lease.owner, self.lease.seconds = (run_id, holder), seconds

    def try_lock(self, client: str) -> bool:
        # A lease: a row naming the run that holds the client, until when. Taken when free, expired,
        # or already this run's (a resumed run); renewed while the run goes on (locks_lost). Our
        # clock's expiry comes before the server's: it starts before the statement.
        start = time.monotonic()
        with self._transaction() as cur:
            cur.execute("INSERT INTO client_leases (client_id, run_id, holder, expires_at) VALUES (%s, %s, %s, "
                        "now() + %s * interval '1 second') ON CONFLICT (client_id) DO UPDATE SET run_id = "
                        "excluded.run_id, holder = excluded.holder, expires_at = excluded.expires_at WHERE "
                        "client_leases.expires_at < now() OR client_leases.run_id = excluded.run_id RETURNING 1",
                        (client, *self.lease.owner, self.lease.seconds))
            taken = cur.fetchone() is not None
        if taken:
            self.lease.held[client] = start + self.lease.seconds
        return taken

    def locks_lost(self) -> dict[str, str]:
        """Renew this run's leases (a third of a lease after the last renewal); those lost, with
        why: another run took one, or the database did not answer before it expired (a restart
        shorter than a lease costs nothing)."""
        lease, lost, now = self.lease, {}, time.monotonic()
        if not lease.held or now < lease.renewed + lease.seconds / 3:
            return lost
        try:
            with self._transaction() as cur:
                # A lease past its expiry that still names this run was taken by no one since (a taker
                # writes its own run id): renewing it is safe, as when this process stalled for a while.
                cur.execute("UPDATE client_leases SET expires_at = now() + %s * interval '1 second' WHERE run_id = "
                            "%s AND client_id = ANY(%s) RETURNING client_id",
                            (lease.seconds, lease.owner[0], list(lease.held)))
                renewed = {row[0] for row in cur.fetchall()}
        except psycopg2.Error as exc:
            lost = {client: f"its lease expired while the database did not answer ({first_line(exc)})"
                    for client, until in lease.held.items() if now >= until}
        else:
            lost = {client: "its lease was taken by another run" for client in lease.held if client not in renewed}
            lease.held.update(dict.fromkeys(renewed, now + lease.seconds))
            lease.renewed = now
        for client in lost:
            del lease.held[client]
        return lost

    def leases(self, client_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        columns = ("run_id", "holder", "expires_at", "live")
        sql = "SELECT client_id, run_id, holder, expires_at, expires_at > now() FROM client_leases"
        rows = self._rows(sql) if client_ids is None else self._rows(f"{sql} WHERE client_id = ANY(%s)", (client_ids,))
        return {row[0]: dict(zip(columns, row[1:])) for row in rows}

    def close(self) -> None:
        # Released now: a run that starts right after this one finds its clients free.
        if self.lease.held:
            with suppress(psycopg2.Error), self._transaction() as cur:  # (on failure, they expire by themselves)
                cur.execute("DELETE FROM client_leases WHERE run_id = %s AND client_id = ANY(%s)",
                            (self.lease.owner[0], list(self.lease.held)))
            self.lease.held.clear()
        self.drop()

    def _insert_many(self, cur: Any, sql: str, rows: list[tuple], fetch: bool) -> list[tuple]:
        # execute_values sends many rows per statement, parameters escaped by libpq.
        return psycopg2.extras.execute_values(cur, sql.format(values="%s"), rows, page_size=1000, fetch=fetch) or []
