"""Spread clients over scrapyd nodes, one job per client.

    python -m adcrawler.dispatch [--nodes URL,URL] [--dry-run] CLIENTS

``CLIENTS`` is a slug, a comma-separated list or ``all`` (the registry). Each
client goes to one node chosen by rendezvous hashing of (client, node): the same
client lands on the same node run after run (its logs and history stay in one
place) and adding a node moves only the clients that now rank it first. A node
that does not answer is skipped; its clients go to their next node.

A client never runs twice at once: a client with a pending or running job on
any node is not scheduled again (job ids start with ``<slug>--``), and if two
dispatchers race, the per-client lock in the database stops the second job
before it sends a request.

Environment: ADCRAWLER_SCRAPYD_NODES (comma-separated URLs, default
http://127.0.0.1:6800), SCRAPYD_USERNAME and SCRAPYD_PASSWORD (HTTP basic
auth, required), ADCRAWLER_SCRAPYD_PROJECT (default adcrawler).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any

from decouple import config

from adcrawler.clients import ClientConfigError, Registry
from adcrawler.config import EXIT_CONFIG, ConfigError, environment_values, parse


def rank(client: str, nodes: list[str]) -> list[str]:
    """Nodes in the client's order of preference (highest random weight first)."""
    return sorted(nodes, key=lambda node: hashlib.sha256(f"{client}|{node}".encode()).digest(), reverse=True)


def assign(clients: list[str], nodes: list[str], alive: set[str]) -> dict[str, str]:
    """Each client to its best-ranked live node; clients with no live node are left out."""
    out = {}
    for client in clients:
        for node in rank(client, nodes):
            if node in alive:
                out[client] = node
                break
    return out


class Scrapyd:
    """The few scrapyd JSON endpoints we use, with basic auth and timeouts."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10):
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.timeout = timeout

    def _call(self, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        req = urllib.request.Request(f"{self.url}/{path}", data=body, headers=self.headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            answer = json.load(resp)
        if answer.get("status") != "ok":
            raise RuntimeError(f"{self.url}/{path}: {answer.get('message', answer)}")
        return answer

    def alive(self) -> bool:
        try:
            self._call("daemonstatus.json")
            return True
        except (OSError, ValueError, RuntimeError):
            return False

    def active_jobs(self, project: str) -> list[str]:
        """Ids of pending and running jobs."""
        jobs = self._call(f"listjobs.json?project={urllib.parse.quote(project)}")
        return [job["id"] for job in jobs["pending"] + jobs["running"]]

    def schedule(self, project: str, client: str) -> str:
        jobid = f"{client}--{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        self._call("schedule.json", {"project": project, "spider": "campaigns", "client": client, "jobid": jobid})
        return jobid


def dispatch(clients: list[str], nodes: dict[str, Scrapyd], project: str, dry_run: bool = False) -> int:
    alive = {url for url, node in nodes.items() if node.alive()}
    for url in sorted(set(nodes) - alive):
        print(f"node {url}: not answering, skipped", file=sys.stderr)
    busy = set()
    for url in alive:
        try:
            busy.update(job.split("--", 1)[0] for job in nodes[url].active_jobs(project))
        except RuntimeError:
            pass  # project not deployed there yet: nothing active
    status = 0
    plan = assign(clients, list(nodes), alive)
    for client in clients:
        if client in busy:
            print(f"{client}: already pending or running, not scheduled again")
        elif client not in plan:
            print(f"{client}: no node available", file=sys.stderr)
            status = 1
        elif dry_run:
            print(f"{client}: would go to {plan[client]}")
        else:
            try:
                jobid = nodes[plan[client]].schedule(project, client)
            except (OSError, RuntimeError) as exc:
                print(f"{client}: scheduling on {plan[client]} failed: {exc}", file=sys.stderr)
                status = 1
                continue
            print(f"{client}: scheduled on {plan[client]} as {jobid}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adcrawler.dispatch", description=__doc__.splitlines()[0])
    parser.add_argument("clients", help="a slug, a comma-separated list, or all")
    parser.add_argument("--nodes", default=None, help="comma-separated scrapyd URLs (ADCRAWLER_SCRAPYD_NODES)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, schedule nothing")
    args = parser.parse_args(argv)
    env = environment_values()
    try:
        urls = parse("ADCRAWLER_SCRAPYD_NODES", args.nodes or env["ADCRAWLER_SCRAPYD_NODES"])
        project = parse("ADCRAWLER_SCRAPYD_PROJECT", env["ADCRAWLER_SCRAPYD_PROJECT"])
        registry = Registry.load(parse("ADCRAWLER_CLIENTS_FILE", env["ADCRAWLER_CLIENTS_FILE"]) or None)
        clients = [c.slug for c in registry.select(args.clients)]
    except (ConfigError, ClientConfigError) as exc:
        print(f"dispatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    username = config("SCRAPYD_USERNAME", default="")
    password = config("SCRAPYD_PASSWORD", default="")
    if not username or not password:
        print("dispatch: set SCRAPYD_USERNAME and SCRAPYD_PASSWORD", file=sys.stderr)
        return EXIT_CONFIG
    nodes = {url: Scrapyd(url, username, password) for url in urls}
    return dispatch(clients, nodes, project, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
