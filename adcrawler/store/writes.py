"""Campaign writes: batched upserts of the current state (rewritten only when something changed) and its
history row, and the quarantine; a batch refused for its content is halved down to the rows refused."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from itemadapter import ItemAdapter

from adcrawler.model import CampaignItem, RejectedRecord, columns

from .connection import Connection, StoreError, first_line

FIELDS = columns(CampaignItem)
KEY = tuple(sorted((name for name, c in FIELDS.items() if c.key), key=lambda name: FIELDS[name].key))
CAMPAIGN_COLUMNS = (*FIELDS, "updated_at")  # updated_at: the store's own
# A row is unchanged, and not rewritten, when all of these are equal.
COMPARED = tuple(name for name, c in FIELDS.items() if c.compared and not c.key)
# A failed sync keeps the time of the last successful one.
_NEW = {"synced_at": "COALESCE(excluded.synced_at, campaigns.synced_at)"}

UPSERT = (
    f"INSERT INTO campaigns ({', '.join(CAMPAIGN_COLUMNS)}) VALUES {{values}} "
    f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = {_NEW.get(c, f'excluded.{c}')}" for c in CAMPAIGN_COLUMNS if c not in KEY)
    + " WHERE "
    + " OR ".join(f"campaigns.{c} IS DISTINCT FROM {_NEW.get(c, f'excluded.{c}')}" for c in COMPARED)
    + f" RETURNING {', '.join(KEY)}"
)
# The history row: the run, the key, each field declared with a history column,
# and what writing it did to the campaign's row (inserted, updated, unchanged).
HISTORY = {c.history: name for name, c in FIELDS.items() if c.history}  # history column -> field
METRICS_COLUMNS = ("run_id", *KEY, *HISTORY, "row_change")
# A campaign written twice in one run (a failed sync, then a successful one) keeps
# the strongest change: its row was inserted, or updated, by this run.
ROW_CHANGE = ("CASE WHEN 'inserted' IN (campaign_metrics.row_change, excluded.row_change) THEN 'inserted' "
              "WHEN 'updated' IN (campaign_metrics.row_change, excluded.row_change) THEN 'updated' "
              "ELSE excluded.row_change END")
METRICS_ON_CONFLICT = (f"ON CONFLICT (run_id, {', '.join(KEY)}) DO UPDATE SET "
                       + ", ".join(f"{c} = excluded.{c}" for c in HISTORY) + f", row_change = {ROW_CHANGE}")
METRICS = f"INSERT INTO campaign_metrics ({', '.join(METRICS_COLUMNS)}) VALUES {{values}} {METRICS_ON_CONFLICT}"
# fetched_at says when the platform last sent the record, even when nothing in it changed.
TOUCH = "UPDATE campaigns SET fetched_at = %s WHERE client_id = %s AND campaign_id = %s AND fetched_at < %s"


def row_change(inserted: bool | None) -> str:
    """What an upsert did to a row: ``inserted`` (True), ``updated`` (False), ``unchanged`` (None)."""
    return "unchanged" if inserted is None else "inserted" if inserted else "updated"


def campaign_row(item: CampaignItem, now: datetime) -> dict[str, Any]:
    """The ``campaigns`` row of ``item`` by column name; flags a JSON array, or NULL when there is none."""
    adapter = ItemAdapter(item)
    row = {**{name: adapter[name] for name in FIELDS}, "updated_at": now}
    for name in (name for name, c in FIELDS.items() if c.type == "flags"):
        row[name] = json.dumps(list(row[name])) if row[name] else None
    return row


REJECTED = ("INSERT INTO rejected_records (run_id, client_id, campaign_id, reason, payload, payload_sha1, seen_at) "
            "VALUES {values} ON CONFLICT (run_id, client_id, payload_sha1) DO NOTHING")


@dataclass
class Removals:
    """What a listing changed in which campaigns are current (:meth:`CampaignWrites.mark_removed`)."""

    removed: list[str] = field(default_factory=list)  # ids marked removed now
    back: int = 0  # marked removed before, listed again
    held: int = 0  # would have been removed; held back by the guard
    before: int = 0  # current campaigns before this listing
    listed: int = 0  # campaigns this listing had


@dataclass
class BatchResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0  # quarantine rows written (validation's and the database's)

    def __iadd__(self, other: "BatchResult") -> "BatchResult":
        for f in ("inserted", "updated", "unchanged", "rejected"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self


@dataclass
class WriteResult:
    """What a write did, per client, and the rows the database refused."""

    clients: dict[str, BatchResult] = field(default_factory=dict)
    stored: list[CampaignItem] = field(default_factory=list)
    refused: list[tuple[CampaignItem | RejectedRecord, str]] = field(default_factory=list)

    def add(self, results: dict[str, BatchResult], items: list[CampaignItem | RejectedRecord]) -> None:
        for client, result in results.items():
            merged = self.clients.setdefault(client, BatchResult())
            merged += result
        self.stored.extend(i for i in items if isinstance(i, CampaignItem))


class CampaignWrites(Connection):
    def write(self, run_id: str, items: list[CampaignItem | RejectedRecord], result: WriteResult | None = None,
              ) -> WriteResult:
        """Store ``items``, halving a batch the database refuses for its content until each refused row
        stands alone and is quarantined; any other error (the database's fault) propagates."""
        result = WriteResult() if result is None else result
        try:
            result.add(self.write_batch(run_id, items), items)
            return result
        except self.refusal as exc:
            if len(items) > 1:
                self.write(run_id, items[:len(items) // 2], result)
                return self.write(run_id, items[len(items) // 2:], result)
            reason = f"refused by the database: {first_line(exc)}"
        item = items[0]
        result.refused.append((item, reason))
        if isinstance(item, RejectedRecord):
            raise StoreError(f"a quarantine row was refused: {reason}")
        quarantined = RejectedRecord.of(item.client_id, None, reason, item.fetched_at,
                                        text=item.raw or json.dumps({"id": item.campaign_id}), cid=item.campaign_id)
        result.add(self.write_batch(run_id, [quarantined]), [])
        return result

    def write_batch(self, run_id: str, items: list[CampaignItem | RejectedRecord]) -> dict[str, BatchResult]:
        """One batch in one transaction; per client, what happened to its rows. Writing the same
        batch again changes nothing (its rows are unchanged)."""
        if not run_id:
            raise StoreError("no run id: rows are written only for a run that holds its clients")
        now = datetime.now(timezone.utc)
        # The last word wins within a batch.
        latest = {(i.client_id, i.campaign_id): i for i in items if isinstance(i, CampaignItem)}
        rejected = [i for i in items if isinstance(i, RejectedRecord)]
        results: dict[str, BatchResult] = defaultdict(BatchResult)
        for r in rejected:
            results[r.client_id].rejected += 1
        with self._transaction() as cur:
            changed = self._upsert(cur, run_id, [campaign_row(i, now) for i in latest.values()]) if latest else {}
            for key in latest:
                change = row_change(changed.get(key))
                setattr(results[key[0]], change, getattr(results[key[0]], change) + 1)
            if rejected:
                self._insert_many(cur, REJECTED, [
                    (run_id, r.client_id, r.campaign_id, r.reason, r.payload, r.payload_sha1, r.seen_at)
                    for r in rejected], fetch=False)
        return dict(results)

    def _upsert(self, cur: Any, run_id: str, rows: list[dict[str, Any]]) -> dict[tuple[str, str], bool]:
        """Upsert ``rows`` and their history rows; returns the keys inserted (True) or updated (False).
        The keys there before tell inserted from updated; RETURNING names the rows changed."""
        keys = [(r["client_id"], r["campaign_id"]) for r in rows]
        existing = self._existing(cur, keys)
        returned = self._insert_many(cur, UPSERT, [tuple(r[c] for c in CAMPAIGN_COLUMNS) for r in rows], fetch=True)
        changed = {(client, campaign): (client, campaign) not in existing for client, campaign in returned}
        self._insert_many(cur, METRICS, [(run_id, *key, *(r[f] for f in HISTORY.values()), row_change(changed.get(key)))
                                         for key, r in zip(keys, rows)], fetch=False)
        for key, r in zip(keys, rows):
            if key not in changed:
                self._execute(cur, TOUCH, (r["fetched_at"], *key, r["fetched_at"]))
        return changed

    def _existing(self, cur: Any, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        by_client: dict[str, list[str]] = {}
        for client, campaign in keys:
            by_client.setdefault(client, []).append(campaign)
        found: set[tuple[str, str]] = set()
        for client, campaigns in by_client.items():
            found.update((client, row[0]) for row in self._execute(
                cur, f"SELECT campaign_id FROM campaigns WHERE client_id = %s AND campaign_id IN "
                     f"({', '.join(['%s'] * len(campaigns))})", [client, *campaigns]).fetchall())
        return found

    def mark_removed(self, client: str, listed: set[str], complete: bool, guard: float,
                     confirmed: bool = False) -> Removals:
        """After a listing of ``client``: unmark the campaigns listed again and, when the listing was
        complete, mark removed the current ones it lacked, unless they are more than ``guard`` of them
        and not ``confirmed`` (a short answer for a bad minute would retire most of a client)."""
        now = datetime.now(timezone.utc)
        with self._transaction() as cur:
            rows = self._execute(cur, "SELECT campaign_id, removed_at IS NOT NULL FROM campaigns WHERE client_id = %s",
                                 (client,)).fetchall()
            back = sorted(campaign for campaign, removed in rows if removed and campaign in listed)
            current = [campaign for campaign, removed in rows if not removed]
            gone = sorted(set(current) - listed) if complete else []
            held = bool(gone) and not confirmed and len(gone) > guard * len(current)
            for ids, at in ((back, None), ([] if held else gone, now)):
                for start in range(0, len(ids), 500):  # bounded statements, one transaction
                    chunk = ids[start:start + 500]
                    self._execute(cur, f"UPDATE campaigns SET removed_at = %s, updated_at = %s WHERE client_id = %s "
                                       f"AND campaign_id IN ({', '.join(['%s'] * len(chunk))})",
                                  [at, now, client, *chunk])
        return Removals(removed=[] if held else gone, back=len(back), held=len(gone) if held else 0,
                        before=len(current), listed=len(listed))

    def swap_fields(self, client: str, seen: set[str], in_every: set[str]) -> tuple[set[str], set[str]] | None:
        """Record the fields of the client's records at this complete listing; returns those of the
        previous one (seen, in every record), or None when there was none."""
        with self._transaction() as cur:
            rows = self._execute(cur, "SELECT field, in_every FROM client_fields WHERE client_id = %s",
                                 (client,)).fetchall()
            self._execute(cur, "DELETE FROM client_fields WHERE client_id = %s", (client,))
            if seen:
                self._insert_many(cur, "INSERT INTO client_fields (client_id, field, in_every) VALUES {values}",
                                  [(client, name, int(name in in_every)) for name in sorted(seen)], fetch=False)
        if not rows:
            return None
        return {name for name, _ in rows}, {name for name, every in rows if every}

