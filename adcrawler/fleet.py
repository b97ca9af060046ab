"""The fleet: clients spread over scrapyd nodes by rendezvous hashing (the same node run after run, a
budget group in one job), each node running its share in a few jobs of many clients; busy clients are
not scheduled twice, and the per-client lock is the last word. ``scrapy dispatch`` is its command line."""

from __future__ import annotations

import hashlib
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from scrapyd_client.exceptions import ErrorResponse, MalformedResponse
from scrapyd_client.pyclient import HEADERS, ScrapydClient, _process_response

from adcrawler.config import value
from adcrawler.ledger import Result
from adcrawler.registry import Client, ClientConfigError, Registry
from adcrawler.store import Store, first_line, open_store

SPIDER = "campaigns"
PROJECT = "adcrawler"  # the scrapyd project, as scrapy.cfg deploys it
SHARD_SIZE = 250  # clients per job: one process holds hundreds near their bound (bench g)
RUNNING = "running"  # a sync_runs row whose run has not recorded its end
SUCCEEDED, SKIPPED = Result.SUCCEEDED.value, Result.SKIPPED.value


class CredentialsRefused(Exception):
    """scrapyd answered 401: SCRAPYD_USERNAME / SCRAPYD_PASSWORD are not the node's."""


# What a node can answer instead of an answer.
NODE_ERRORS = (requests.RequestException, ErrorResponse, MalformedResponse, CredentialsRefused, KeyError)


class Node(ScrapydClient):
    """scrapyd-client's client with a bound on every call and a refused credential said as such."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10):
        super().__init__(url.rstrip("/"), username, password)
        self.timeout = timeout

    def _get(self, basename: str, params: dict | None = None) -> dict:
        return self._call("GET", basename, params=params or {})

    def _post(self, basename: str, data: object) -> dict:
        return self._call("POST", basename, data=data)

    def _call(self, method: str, basename: str, **kwargs: object) -> dict:
        response = requests.request(method, f"{self.url}/{basename}.json", headers=HEADERS, auth=self.auth,
                                    timeout=self.timeout, **kwargs)
        if response.status_code == 401:
            raise CredentialsRefused("credentials refused (SCRAPYD_USERNAME / SCRAPYD_PASSWORD)")
        return _process_response(response)


def rank(key: str, nodes: list[str]) -> list[str]:
    """Nodes in the order of preference of ``key`` (highest random weight first)."""
    return sorted(nodes, key=lambda node: hashlib.sha256(f"{key}|{node}".encode()).digest(), reverse=True)


def group(client: Client) -> str:
    """What hashes as one: a budget group, or the client alone."""
    return f"budget:{client.budget}" if client.budget else client.slug


def assign(clients: list[Client], nodes: list[str], alive: set[str]) -> dict[str, str]:
    """Each client's slug to its group's best-ranked live node; clients with no live node are left out."""
    out = {}
    for client in clients:
        for node in rank(group(client), nodes):
            if node in alive:
                out[client.slug] = node
                break
    return out


def shards(clients: list[Client], size: int) -> list[list[str]]:
    """Split one node's clients into as few jobs as ``size`` allows, of near-equal size,
    a budget group never split (a group larger than ``size`` is a job of its own size)."""
    groups: dict[str, list[str]] = {}
    for client in sorted(clients, key=lambda c: c.slug):
        groups.setdefault(group(client), []).append(client.slug)
    count = -(-len(clients) // size) if clients else 0
    jobs: list[list[str]] = [[] for _ in range(count)]
    for members in sorted(groups.values(), key=len, reverse=True):  # largest first: even sizes
        min(jobs, key=len).extend(members)
    return [sorted(job) for job in jobs if job]


@dataclass
class Job:
    node: str
    job_id: str
    slugs: list[str]


@dataclass
class Fleet:
    """The nodes as one dispatcher sees them: which answer, and who is busy."""

    nodes: dict[str, Node]
    project: str
    registry: Registry
    out: Callable[[str], None] = print
    err: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    alive: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # slugs in pending jobs
    live_jobs: set[str] = field(default_factory=set)  # ids of pending and running jobs

    def survey(self) -> None:
        """Ask every node what it runs: a node that does not answer, or lacks the project, is left out."""
        for url, node in self.nodes.items():
            try:
                versions = node.versions(self.project)
                jobs = node.jobs(self.project)
            except NODE_ERRORS as exc:
                said = (f"{exc}" if isinstance(exc, CredentialsRefused) else
                        f"{exc} (deploy with scrapyd-deploy)" if isinstance(exc, ErrorResponse) else
                        f"not answering ({type(exc).__name__})")
                self.err(f"node {url}: {said}; its clients go to their next node")
                continue
            if not versions:
                self.err(f"node {url}: project {self.project} has no version (deploy with scrapyd-deploy); "
                         "its clients go to their next node")
                continue
            self.alive.add(url)
            self.versions[url] = versions[-1]  # scrapyd sorts them: the last is the one it runs
            for job in jobs["pending"]:
                self.live_jobs.add(job["id"])
                try:
                    self.pending.update(c.slug for c in self.registry.select(job.get("args", {}).get("client", "")))
                except ClientConfigError:
                    pass  # a job this dispatcher did not write; the lock covers it
            self.live_jobs.update(job["id"] for job in jobs["running"])

    def running(self, store: Store | None) -> set[str]:
        """Slugs of clients whose run is recorded as running by a job still alive on a node."""
        if store is None:
            return set()
        by_id = {c.client_id: c.slug for c in self.registry.clients.values()}
        return {by_id.get(client, client) for client, job in store.running() if job in self.live_jobs}

    def schedule(self, node: str, slugs: list[str], seq: int, stamp: str) -> Job:
        job_id = f"{stamp}-{secrets.token_hex(2)}-{seq:03d}"
        args = [("client", self.registry.shard(slugs)), ("node", node), ("jobid", job_id),
                ("_version", self.versions[node])]
        self.nodes[node].schedule(self.project, SPIDER, args)
        return Job(node, job_id, slugs)


def dispatch(fleet: Fleet, clients: list[Client], shard_size: int, store: Store | None,
             dry_run: bool = False) -> tuple[list[Job], int]:
    """Schedule ``clients``; returns the jobs scheduled and 0, or 1 when a client could not be."""
    fleet.survey()
    busy = fleet.pending | fleet.running(store)
    if busy & {c.slug for c in clients}:
        names = sorted(busy & {c.slug for c in clients})
        fleet.out(f"{len(names)} clients already pending or running, not scheduled again: "
                  f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    todo = [c for c in clients if c.slug not in busy]
    plan = assign(todo, list(fleet.nodes), fleet.alive)
    status = 0
    homeless = [c.slug for c in todo if c.slug not in plan]
    if homeless:
        fleet.err(f"{len(homeless)} clients have no node that answers: {', '.join(homeless[:20])}")
        status = 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    jobs: list[Job] = []
    for node in fleet.nodes:
        mine = [c for c in todo if plan.get(c.slug) == node]
        for slugs in shards(mine, shard_size):
            if dry_run:
                fleet.out(f"node {node}: would run a job of {len(slugs)} clients: {', '.join(slugs)}")
                continue
            try:
                job = fleet.schedule(node, slugs, len(jobs) + 1, stamp)
            except NODE_ERRORS as exc:
                fleet.err(f"node {node}: scheduling a job of {len(slugs)} clients failed: "
                          f"{first_line(exc) or type(exc).__name__}")
                status = 1
                continue
            jobs.append(job)
            fleet.out(f"node {node}: job {job.job_id} holds {len(slugs)} clients (version {fleet.versions[node]})")
    return jobs, status


def wait(fleet: Fleet, jobs: list[Job], poll: float, limit: float, lost_after: int = 3) -> dict[str, str]:
    """Wait until every job has ended (or its node stopped answering); returns each job's log URL."""
    left = {job.job_id: job for job in jobs}
    logs: dict[str, str] = {}
    silent: dict[str, int] = {}
    deadline = time.monotonic() + limit
    while left and time.monotonic() < deadline:
        for node in sorted({job.node for job in left.values()}):
            try:
                answer = fleet.nodes[node].jobs(fleet.project)
            except NODE_ERRORS:
                silent[node] = silent.get(node, 0) + 1
                if silent[node] >= lost_after:
                    fleet.err(f"node {node}: stopped answering; its jobs are counted as lost")
                    left = {i: j for i, j in left.items() if j.node != node}
                continue
            silent[node] = 0
            active = {job["id"] for job in answer["pending"] + answer["running"]}
            for job in answer["finished"]:
                if job["id"] in left:
                    logs[job["id"]] = f"{node}{job.get('log_url') or ''}"
            left = {i: j for i, j in left.items() if j.node != node or i in active}
        if left:
            time.sleep(poll)
    for job in left.values():
        fleet.err(f"node {job.node}: job {job.job_id} still running after {limit:.0f} s; not waited for")
    return logs


def report(fleet: Fleet, jobs: list[Job], store: Store, logs: dict[str, str]) -> int:
    """One line per client that did not succeed; 0 when every client scheduled ended well."""
    latest: dict[str, dict] = {}
    for row in store.runs_of_jobs([job.job_id for job in jobs]):
        latest[row["client_id"]] = row  # oldest first: the last one wins
    counts: dict[str, int] = {}
    status = 0
    for job in jobs:
        where = f"job {job.job_id} on {job.node}" + (f" (log {logs[job.job_id]})" if job.job_id in logs else "")
        for slug in job.slugs:
            row = latest.get(fleet.registry.clients[slug].client_id)
            outcome = row["outcome"] if row else "no run recorded"
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome not in (SUCCEEDED, SKIPPED):
                status = 1
                if row is None:
                    reasons = "the job ended before recording it"
                elif outcome == RUNNING:
                    reasons = "its job ended before the run did (killed, or its node was lost)"
                else:
                    reasons = row["outcome_reasons"] or ""
                fleet.err(f"{slug}: {outcome}{': ' + reasons if reasons else ''}; {where}")
    fleet.out("clients: " + (", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
                             or "none scheduled"))
    return status


def open_fleet_store(settings: Any, err: Callable[[str], None]) -> Store | None:
    try:
        store = open_store(value(settings, "DATABASE_URL"), value(settings, "ADCRAWLER_DATA_DIR"))
        store.migrate()
        return store
    except Exception as exc:  # noqa: BLE001 - any driver or setting error: said, not raised
        err(f"database unavailable ({first_line(exc)}): running jobs are not known here; the per-client "
            "lock still keeps a client from running twice")
        return None
