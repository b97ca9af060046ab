"""The fleet: three real scrapyd nodes on 127.0.0.2-4, one PostgreSQL, the simulator, tens of
clients in shards of several per job; a node killed mid-run; dispatchers racing."""

from __future__ import annotations

import subprocess
from collections import Counter
from types import SimpleNamespace

import pytest
import requests

from adcrawler.fleet import assign
from adcrawler.registry import Registry
from adcrawler.store import open_store
from harness.runner import ROOT
from harness.scrapyd import (
    PASSWORD,
    USER,
    dispatch,
    dispatch_command,
    node_env,
    start_nodes,
    write_registry,
)
from tests.conftest import QUIET, assert_run_counts_match_rows, wait_for
from tests.db import Db

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
SLUGS = [f"fleet{i:02d}" for i in range(30)]
CAMPAIGNS = 20


@pytest.fixture
def start_fleet(tmp_path, pg_url, mock_factory, egg):
    """Three nodes with the egg deployed, their jobs pointed at a simulator started with ``mock_args``."""
    started = []

    def start(*mock_args: str) -> SimpleNamespace:
        mock = mock_factory(*QUIET, "--campaigns", str(CAMPAIGNS), *mock_args)
        registry = write_registry(tmp_path / "clients.toml", SLUGS)
        store = open_store(pg_url, "")  # the tables exist before a test looks at them
        store.migrate()
        store.close()
        # Held syncs wait for the simulator's release: a sync timeout that cannot fire first.
        nodes = start_nodes(HOSTS, tmp_path, node_env(mock.url, pg_url, tmp_path, registry,
                                                      ADCRAWLER_TIMEOUT_SYNC="6000"))  # 60 s at 0.01
        started.extend(nodes)
        for node in nodes:
            node.deploy(egg)
        urls = [node.url for node in nodes]
        return SimpleNamespace(mock=mock, nodes=nodes, urls=urls, registry=registry, db=Db(tmp_path, pg_url),
                               pg_url=pg_url, plan=assign(Registry.load(registry).select("all"), urls, set(urls)))

    yield start
    for node in started:
        node.stop()


def _idle(nodes) -> bool:
    return all(not j["pending"] and not j["running"] for j in (n.jobs() for n in nodes))


def _latest_outcomes(db: Db) -> dict[str, str]:
    rows = db.rows("SELECT DISTINCT ON (client_id) client_id, outcome FROM sync_runs "
                   "WHERE outcome <> 'skipped' ORDER BY client_id, started_at DESC")
    return dict(rows)


def _all_stored_once(fleet: SimpleNamespace) -> None:
    per_client = dict(fleet.db.rows("SELECT client_id, COUNT(*) FROM campaigns WHERE sync_status = 'synced' "
                                    "GROUP BY 1"))
    assert per_client == {slug: CAMPAIGNS for slug in SLUGS}
    assert_run_counts_match_rows(fleet.db)


def test_each_node_runs_its_share_in_few_jobs_and_every_client_once(start_fleet):
    fleet = start_fleet()
    result = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "6", "--wait",
                      "--poll", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"clients: {len(SLUGS)} succeeded"), result.stdout

    runs = fleet.db.rows("SELECT client_id, job_id, node, egg_version, pid, outcome FROM sync_runs")
    assert len(runs) == len(SLUGS) and {r[5] for r in runs} == {"succeeded"}
    assert all(r[3] == "1" and r[4] for r in runs)  # the egg version the dispatcher pinned, the process
    assert {r[0]: r[2] for r in runs} == fleet.plan  # each client ran on the node its hashing chose
    per_job = Counter(r[1] for r in runs)
    for url in fleet.urls:  # a node's share in as few jobs of at most 6 as it takes
        share = sum(1 for node in fleet.plan.values() if node == url)
        jobs = {r[1] for r in runs if r[2] == url}
        assert len(jobs) == -(-share // 6) and all(per_job[j] <= 6 for j in jobs), (url, share, per_job)
    _all_stored_once(fleet)
    syncs = fleet.mock.stats()["syncs"]
    assert all(set(syncs[slug].values()) == {1} and len(syncs[slug]) == CAMPAIGNS for slug in SLUGS)


def test_a_client_pending_or_running_is_not_scheduled_again_and_the_lock_has_the_last_word(start_fleet):
    fleet = start_fleet("--hold-syncs", "2")  # every run stays going until released
    first = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10")
    assert first.returncode == 0, first.stderr
    wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'") == len(SLUGS),
             120, "every client's run to be going")
    jobs_before = sum(len(n.jobs()["running"]) for n in fleet.nodes)

    again = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url)
    assert again.returncode == 0, again.stderr
    assert f"{len(SLUGS)} clients already pending or running" in again.stdout, again.stdout
    assert sum(len(n.jobs()["running"]) + len(n.jobs()["pending"]) for n in fleet.nodes) == jobs_before

    # A racer that looked before the runs were recorded schedules the same clients: the lock skips them.
    shard = Registry.load(fleet.registry).shard(SLUGS)
    answer = requests.post(f"{fleet.urls[0]}/schedule.json", auth=(USER, PASSWORD), timeout=10,
                           data={"project": "adcrawler", "spider": "campaigns", "client": shard}).json()
    assert answer["status"] == "ok", answer
    wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'skipped'") == len(SLUGS),
             120, "the racing job to skip every client")
    reasons = fleet.db.rows("SELECT outcome_reasons, job_id FROM sync_runs WHERE outcome = 'skipped'")
    assert all(r[0].startswith("another run holds the client: run ") and " job " in r[0] and r[1] == answer["jobid"]
               for r in reasons), reasons

    fleet.mock.release()
    wait_for(lambda: _idle(fleet.nodes), 180, "the jobs to end", interval=0.5)
    assert _latest_outcomes(fleet.db) == {slug: "succeeded" for slug in SLUGS}
    _all_stored_once(fleet)
    syncs = fleet.mock.stats()["syncs"]
    assert all(set(syncs[slug].values()) == {1} for slug in SLUGS)  # the skipped job sent nothing


def test_a_node_killed_mid_run_its_clients_go_to_their_next_node(start_fleet):
    fleet = start_fleet("--hold-syncs", "2")
    cmd, env = dispatch_command(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10", "--wait",
                                "--poll", "0.5")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'")
                 == len(SLUGS), 120, "every client's run to be going")
        dead = fleet.nodes[0]
        lost = sorted(slug for slug, url in fleet.plan.items() if url == dead.url)
        assert lost
        dead.kill()
        fleet.mock.release()
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    # The waiting dispatcher tells cron: the lost clients, and a status that is not 0.
    assert first.returncode == 1, out + err
    assert f"node {dead.url}: stopped answering" in err
    assert all(f"{slug}: running: its job ended before the run did" in err for slug in lost), err
    assert out.strip().endswith(f"clients: {len(lost)} running, {len(SLUGS) - len(lost)} succeeded"), out

    again = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10", "--wait",
                     "--poll", "0.5")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"node {dead.url}: not answering" in again.stderr
    assert _latest_outcomes(fleet.db) == {slug: "succeeded" for slug in SLUGS}
    killed = fleet.db.rows("SELECT client_id, node, outcome_reasons FROM sync_runs WHERE outcome = 'interrupted'")
    assert sorted(r[0] for r in killed) == lost
    assert all(r[1] == dead.url and r[2] == "the process ended before the run did" for r in killed)
    moved = dict(fleet.db.rows("SELECT client_id, node FROM sync_runs WHERE outcome = 'succeeded' "
                               "AND client_id = ANY(%s)", (lost,)))
    assert set(moved) == set(lost) and dead.url not in moved.values()
    _all_stored_once(fleet)


def test_two_dispatchers_racing_run_each_client_once(start_fleet):
    fleet = start_fleet()
    procs = []
    for _ in range(2):
        cmd, env = dispatch_command(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "8", "--wait",
                                    "--poll", "0.5")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    succeeded = Counter(r[0] for r in fleet.db.rows("SELECT client_id FROM sync_runs WHERE outcome = 'succeeded'"))
    assert succeeded == Counter(SLUGS)
    assert fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome NOT IN ('succeeded', 'skipped')") == 0
    syncs = fleet.mock.stats()["syncs"]
    assert all(set(syncs[slug].values()) == {1} for slug in SLUGS)
    _all_stored_once(fleet)


def test_a_job_that_cannot_start_says_why_in_its_log_and_a_wrong_password_is_named(start_fleet):
    fleet = start_fleet()
    node = fleet.nodes[0]
    answer = requests.post(f"{node.url}/schedule.json", auth=(USER, PASSWORD), timeout=10,
                           data={"project": "adcrawler", "spider": "campaigns", "client": "fleet00",
                                 "setting": "ADCRAWLER_RATE_LIMIT=zero"}).json()
    finished = wait_for(lambda: [j for j in node.jobs()["finished"] if j["id"] == answer["jobid"]], 60,
                        "the job to end")
    log = requests.get(f"{node.url}{finished[0]['log_url']}", auth=(USER, PASSWORD), timeout=10)
    assert log.ok and "ADCRAWLER_RATE_LIMIT" in log.text, log.text

    refused = dispatch(fleet.urls[:1], "all", fleet.registry, fleet.pg_url, password="wrong")
    assert refused.returncode == 1
    assert f"node {node.url}: credentials refused" in refused.stderr, refused.stderr
    assert "wrong" not in refused.stdout + refused.stderr
