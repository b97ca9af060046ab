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
from functools import partialmethod
from typing import Any

import requests
from scrapyd_client.exceptions import ErrorResponse, MalformedResponse
from scrapyd_client.pyclient import HEADERS, ScrapydClient, _process_response

from adcrawler.config import value
from adcrawler.ledger import Result
from adcrawler.logs import shown
from adcrawler.registry import STAMP, Client, ClientConfigError, Registry, scheduled_at
from adcrawler.store import Store, first_line, open_store

SPIDER = "campaigns"
PROJECT = "adcrawler"  # the scrapyd project, as scrapy.cfg deploys it
RUNNING = "running"  # a sync_runs row whose run has not recorded its end
SUCCEEDED, SKIPPED = Result.SUCCEEDED.value, Result.SKIPPED.value
LOST_AFTER = 3  # polls a node leaves unanswered in a row before it is lost


class CredentialsRefused(Exception):
    """scrapyd answered 401: SCRAPYD_USERNAME / SCRAPYD_PASSWORD are not the node's."""


# What a node can answer instead of an answer.
NODE_ERRORS = (requests.RequestException, ErrorResponse, MalformedResponse, CredentialsRefused, KeyError)


class Node(ScrapydClient):
    """scrapyd-client's client with a bound on every call and a refused credential said as such."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10):
        super().__init__(url.rstrip("/"), username, password)
        self.timeout = timeout

    def _call(self, method: str, basename: str, params: dict | None = None, data: object = None) -> dict:
        response = requests.request(method, f"{self.url}/{basename}.json", params=params, data=data, headers=HEADERS,
                                    auth=self.auth, timeout=self.timeout)
        if response.status_code == 401:
            raise CredentialsRefused("credentials refused (SCRAPYD_USERNAME / SCRAPYD_PASSWORD)")
        return _process_response(response)

    _get = partialmethod(_call, "GET")
    _post = partialmethod(_call, "POST")


def rank(key: str, nodes: list[str]) -> list[str]:
    """Nodes in the order of preference of ``key`` (highest random weight first)."""
    return sorted(nodes, key=lambda node: hashlib.sha256(f"{key}|{node}".encode()).digest(), reverse=True)


def group(client: Client) -> str:
    """What hashes as one: a budget group, or the client alone."""
    return f"budget:{client.budget}" if client.budget else client.slug


def assign(clients: list[Client], nodes: list[str], alive: set[str]) -> dict[str, str]:
    """Each client's slug to its group's best-ranked live node; clients with no live node are left out."""
    best = {c.slug: next((node for node in rank(group(c), nodes) if node in alive), None) for c in clients}
    return {slug: node for slug, node in best.items() if node is not None}


def shards(clients: list[Client], size: int) -> list[list[str]]:
    """Split one node's clients into as few jobs as ``size`` allows, of near-equal size,
    a budget group never split (a group larger than ``size`` is a job of its own size)."""
    groups: dict[str, list[str]] = {}
    for client in sorted(clients, key=lambda c: c.slug):
        groups.setdefault(group(client), []).append(client.slug)
    jobs: list[list[str]] = [[] for _ in range(-(-len(clients) // size))]
    for members in sorted(groups.values(), key=len, reverse=True):  # largest first: even sizes
        min(jobs, key=len).extend(members)
    return [sorted(job) for job in jobs if job]


@dataclass
class Job:
    node: str
    job_id: str
    slugs: list[str]
    scheduled: float = 0.0  # wall clock, for a job still pending
    started: bool = False


@dataclass
class Fleet:
    """The nodes as one dispatcher sees them: which answer, and who is busy."""

    nodes: dict[str, Node]
    project: str
    registry: Registry
    out: Callable[[str], None] = print
    err: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
    clock: Callable[[], float] = time.time
    alive: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)
    busy: dict[str, Job] = field(default_factory=dict)  # slug -> the live job that holds it
    live_jobs: dict[str, str] = field(default_factory=dict)  # id of a pending or running job -> its node

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
            else:
                said = "" if versions else f"project {self.project} has no version (deploy with scrapyd-deploy)"
            if said:
                self.err(f"node {url}: {said}; its clients go to their next node")
                continue
            self.alive.add(url)
            self.versions[url] = versions[-1]  # scrapyd sorts them: the last is the one it runs
            for job in jobs["pending"]:
                self.live_jobs[job["id"]] = url
                try:
                    slugs = [c.slug for c in self.registry.select(job.get("args", {}).get("client", ""))]
                except ClientConfigError:
                    continue  # a job this dispatcher did not write; the lock covers it
                pending = Job(url, job["id"], slugs, scheduled_at(job["id"]))
                self.busy.update((slug, pending) for slug in slugs)
            self.live_jobs.update((job["id"], url) for job in jobs["running"])

    def note_running(self, store: Store | None) -> None:
        """Add the clients whose run is recorded as running by a job still alive on a node."""
        by_id = {c.client_id: c.slug for c in self.registry.clients.values()}
        jobs: dict[str, Job] = {}
        for client, job_id in store.running() if store is not None else []:
            if job_id in self.live_jobs:
                job = jobs.setdefault(job_id, Job(self.live_jobs[job_id], job_id, [], started=True))
                job.slugs.append(by_id.get(client, client))
                self.busy[job.slugs[-1]] = job

    def schedule(self, node: str, slugs: list[str], seq: int, resume: list[str] | None = None) -> Job:
        now = self.clock()
        job_id = f"{datetime.fromtimestamp(now, timezone.utc).strftime(STAMP)}-{secrets.token_hex(2)}-{seq:03d}"
        args = [("client", self.registry.shard(slugs)), ("node", node), ("jobid", job_id),
                ("_version", self.versions[node]), *([("resume", ",".join(resume))] if resume else [])]
        self.nodes[node].schedule(self.project, SPIDER, args)
        return Job(node, job_id, slugs, now)

    def cancel(self, job: Job, why: str) -> bool:
        """Cancel a job that never started; False when it started meanwhile (it is waited for)."""
        try:
            answer = self.nodes[job.node].cancel(self.project, job.job_id)
        except NODE_ERRORS as exc:
            self.err(f"node {job.node}: cancelling job {job.job_id} failed ({first_line(exc)})")
            return False
        if answer.get("prevstate") == "running":
            job.started = True
            return False
        self.err(f"node {job.node}: job {job.job_id} {why}; cancelled, its {len(job.slugs)} clients go to their "
                 "next node")
        return True


@dataclass
class Dispatch:
    """One dispatch: the job that holds each client (the last one, when a client was moved)."""

    fleet: Fleet
    shard_size: int
    start_limit: float
    placed: dict[str, Job] = field(default_factory=dict)
    avoid: set[str] = field(default_factory=set)  # nodes lost or that do not start jobs: none is sent more
    lost: set[str] = field(default_factory=set)  # nodes that stopped answering: none is asked more
    moved: dict[str, str] = field(default_factory=dict)  # client -> the job it last left (once per job lost)
    resume: dict[str, set[str]] = field(default_factory=dict)  # client -> its lost runs, for its next node to finish
    leases: dict[str, Any] = field(default_factory=dict)  # a waiting client's lease expiry when first seen
    status: int = 0
    seq: int = 0

    def place(self, clients: list[Client], dry_run: bool = False) -> None:
        """Schedule ``clients`` on their best live node, in as few jobs per node as ``shard_size`` allows."""
        fleet = self.fleet
        plan = assign(clients, list(fleet.nodes), fleet.alive - self.avoid)
        homeless = [c.slug for c in clients if c.slug not in plan]
        if homeless:
            fleet.err(f"{len(homeless)} clients have no node that answers: {shown(homeless)}")
            self.status = 1
        for node in fleet.nodes:
            mine = [c for c in clients if plan.get(c.slug) == node]
            for slugs in shards(mine, self.shard_size):
                if dry_run:
                    fleet.out(f"node {node}: would run a job of {len(slugs)} clients: {', '.join(slugs)}")
                    continue
                self.seq += 1
                resume = sorted({run for slug in slugs for run in self.resume.get(slug, ())})
                try:
                    job = fleet.schedule(node, slugs, self.seq, resume)
                except NODE_ERRORS as exc:
                    fleet.err(f"node {node}: scheduling a job of {len(slugs)} clients failed: {first_line(exc)}")
                    self.status = 1
                    continue
                self.placed.update((slug, job) for slug in slugs)
                finishing = f", finishing {len(resume)} lost run(s)" if resume else ""
                fleet.out(f"node {node}: job {job.job_id} holds {len(slugs)} clients "
                          f"(version {fleet.versions[node]}){finishing}")

    def free(self, slugs: list[str], store: Store | None) -> tuple[list[str], list[str]]:
        """Split clients into those free to send and those whose lease a run no live job holds still
        holds (killed, or on a lost node): they wait for the lease to end. A lease renewed meanwhile
        is a live run's: its client is left to it."""
        clients = self.fleet.registry.clients
        leases = store.leases([clients[slug].client_id for slug in slugs]) if store is not None and slugs else {}
        ready, waiting = [], []
        for slug in slugs:
            lease = leases.get(clients[slug].client_id)
            if not lease or not lease["live"]:
                ready.append(slug)
            elif self.leases.setdefault(slug, lease["expires_at"]) < lease["expires_at"]:
                self.fleet.err(f"{slug}: a run outside this dispatch's jobs renews its lease ({lease['holder']}); "
                               "left to it")
            else:
                waiting.append(slug)
        return ready, waiting

    def move(self, slugs: list[str], store: Store | None) -> list[str]:
        """Give clients whose job was lost or cancelled their next node, once per job (a client whose
        run ended there stays); the run a lost job left going is finished there, not done again.
        Returns the clients still waiting for a lost run's lease."""
        clients = self.fleet.registry.clients
        rows = store.runs_of_jobs(sorted({self.placed[slug].job_id for slug in slugs})) if store is not None else []
        runs = {(row["client_id"], row["job_id"]): row for row in rows}
        slugs = [slug for slug in slugs if self.moved.get(slug) != self.placed[slug].job_id
                 and runs.get((clients[slug].client_id, self.placed[slug].job_id), {}).get("outcome", RUNNING)
                 == RUNNING]
        ready, waiting = self.free(slugs, store)
        for slug in ready:  # a node lost or lazy is avoided from then on: a client moves once per node at most
            job = self.placed[slug]
            self.moved[slug] = job.job_id
            lost = runs.get((clients[slug].client_id, job.job_id))
            if lost:
                self.resume.setdefault(slug, set()).add(lost["run_id"])
        self.place([clients[slug] for slug in ready])
        return waiting

    def jobs(self) -> list[Job]:
        return list({job.job_id: job for job in self.placed.values()}.values())


def dispatch(fleet: Fleet, clients: list[Client], shard_size: int, store: Store | None, dry_run: bool,
             start_limit: float) -> Dispatch:
    """Schedule ``clients``: a client busy in a live job is held by that job (waited for, not sent
    again), unless the job was ours and has not started within ``start_limit``: then it is cancelled
    and its clients sent to their next node."""
    fleet.survey()
    fleet.note_running(store)
    run = Dispatch(fleet, shard_size, start_limit)
    wanted = {c.slug for c in clients}
    stuck = {job.job_id: job for slug, job in fleet.busy.items() if slug in wanted and not job.started
             and job.scheduled and fleet.clock() - job.scheduled > start_limit}
    freed: list[Client] = []  # every client of a cancelled job, wanted or not: none is dropped
    for job in stuck.values():
        if dry_run:
            fleet.out(f"node {job.node}: would cancel job {job.job_id}, pending for "
                      f"{fleet.clock() - job.scheduled:.0f} s")
        elif fleet.cancel(job, f"has not started in {fleet.clock() - job.scheduled:.0f} s"):
            run.avoid.add(job.node)
            freed += [fleet.registry.clients[slug] for slug in job.slugs if fleet.busy.pop(slug, None)]
    held = sorted(wanted & set(fleet.busy))
    if held:
        fleet.out(f"{len(held)} clients already pending or running, not scheduled again: {shown(held)}")
        run.placed.update((slug, fleet.busy[slug]) for slug in held)
    todo = [c.slug for c in clients if c.slug not in fleet.busy and c not in freed] + [c.slug for c in freed]
    ready, waiting = run.free(todo, store)
    if waiting:  # (a dry run has no store: none waits)
        fleet.out(f"{len(waiting)} clients wait for the lease of a run that ended without releasing it: "
                  + shown(waiting))
        while waiting:  # an unrenewed lease ends within store.LEASE, a minute
            time.sleep(1)
            more, waiting = run.free(waiting, store)
            ready += more
    run.place([fleet.registry.clients[slug] for slug in ready], dry_run)
    return run


def wait(run: Dispatch, store: Store | None, poll: float, limit: float) -> dict[str, str]:
    """Wait until every client's job has ended; returns each job's log URL. A job that does not start
    within the start limit is cancelled, and a node that stops answering is lost: their clients go to
    their next node once (after the lease of a lost run has ended)."""
    fleet = run.fleet
    logs: dict[str, str] = {}
    silent: dict[str, int] = {}
    orphans: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        left = {job.job_id: job for job in run.jobs() if job.job_id not in logs and job.node not in run.lost}
        if not left and not orphans:
            break
        for node in sorted({job.node for job in left.values()}):
            try:
                answer = fleet.nodes[node].jobs(fleet.project)
            except NODE_ERRORS:
                silent[node] = silent.get(node, 0) + 1
                if silent[node] >= LOST_AFTER:
                    fleet.err(f"node {node}: stopped answering; its clients go to their next node")
                    run.avoid.add(node)
                    run.lost.add(node)
                    orphans += [slug for job in left.values() if job.node == node for slug in job.slugs]
                continue
            silent[node] = 0
            pending = {job["id"] for job in answer["pending"]}
            running = {job["id"] for job in answer["running"]}
            finished = {job["id"]: job for job in answer["finished"]}
            for job in (j for j in left.values() if j.node == node):
                if job.job_id in finished or job.job_id not in pending | running:
                    logs[job.job_id] = f"{node}{finished.get(job.job_id, {}).get('log_url') or ''}"
                elif job.job_id in running:
                    job.started = True
                elif (job.scheduled and fleet.clock() - job.scheduled > run.start_limit
                      and fleet.cancel(job, f"has not started in {run.start_limit:.0f} s")):
                    run.avoid.add(node)  # its other jobs are cancelled in turn, not waited for
                    logs[job.job_id] = ""
                    orphans += job.slugs
        if orphans:
            orphans = run.move(orphans, store)
        time.sleep(poll)
    for job in run.jobs():
        if job.job_id not in logs and job.node not in run.lost:
            fleet.err(f"node {job.node}: job {job.job_id} still running after {limit:.0f} s; not waited for")
    return logs


def report(run: Dispatch, store: Store, logs: dict[str, str]) -> int:
    """One line per client that did not succeed; 0 when every client ended well (succeeded, or
    skipped because another run held it)."""
    fleet = run.fleet
    latest: dict[str, dict] = {}
    for row in store.runs_of_jobs([job.job_id for job in run.jobs()]):
        if row["outcome"] != SKIPPED or row["client_id"] not in latest:
            latest[row["client_id"]] = row  # oldest first: the last one that ran wins
    counts: dict[str, int] = {}
    status = run.status
    for slug, job in sorted(run.placed.items()):
        row = latest.get(fleet.registry.clients[slug].client_id)
        if row is not None and row["job_id"] != job.job_id and row["outcome"] != SUCCEEDED:
            row = None  # a run of the job it left is not its outcome
        outcome = row["outcome"] if row else "no run recorded"
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in (SUCCEEDED, SKIPPED):
            continue
        status = 1
        where = f"job {job.job_id} on {job.node}" + (f" (log {logs[job.job_id]})" if logs.get(job.job_id) else "")
        if row is None:
            reasons = ("its node was lost" if job.node in run.lost else
                       "its job was cancelled before it started" if job.job_id in logs and not logs[job.job_id]
                       else "the job ended before recording it")
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
