"""The fleet: three real scrapyd nodes on 127.0.0.2-4, one PostgreSQL, the simulator, tens of
clients in shards of several per job; a node killed mid-run; dispatchers racing."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import requests

from adcrawler.fleet import assign
from adcrawler.registry import STAMP, Registry
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

    def start(*mock_args: str, lazy: tuple[str, ...] = ()) -> SimpleNamespace:
        mock = mock_factory(*QUIET, "--campaigns", str(CAMPAIGNS), *mock_args)
        registry = write_registry(tmp_path / "clients.toml", SLUGS)
        store = open_store(pg_url, "")  # the tables exist before a test looks at them
        store.migrate()
        store.close()
        # Held syncs wait for the simulator's release: a sync timeout that cannot fire first.
        nodes = start_nodes(HOSTS, tmp_path, node_env(mock.url, pg_url, tmp_path, registry,
                                                      ADCRAWLER_TIMEOUT_SYNC="6000"),  # 60 s at 0.01
                            lazy)
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


def _kill_mid_dispatch(fleet: SimpleNamespace, cmd: list[str], env: dict, dead, clients: list[str]):
    """Start the waiting dispatcher; once ``clients`` run on ``dead`` with their 8 answered syncs
    stored (the simulator holds the rest), kill the node and release the syncs."""
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running' AND node = %s",
                                         (dead.url,)) == len(clients), 120, "the runs on the node to kill")
        wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE client_id = ANY(%s)",
                                         (clients,)) == 8 * len(clients), 60, "their answered syncs stored")
        dead.kill()
        fleet.mock.release()
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    return first, out, err


def _killed_runs_work_not_redone(fleet: SimpleNamespace, clients: list[str]) -> None:
    """Each campaign the killed runs stored as synced was synced once on the platform."""
    done = fleet.db.rows("SELECT m.client_id, m.campaign_id FROM campaign_metrics m JOIN sync_runs r "
                         "USING (run_id, client_id) WHERE r.outcome = 'interrupted' AND m.sync_status = 'synced'")
    syncs = fleet.mock.stats()["syncs"]
    assert len(done) == 8 * len(clients) and all(syncs[client][campaign] == 1 for client, campaign in done)


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

    # A job a dispatcher scheduled before that sync (a racing dispatcher's) finds it done and skips it.
    late = f"{datetime.fromtimestamp(time.time() - 120, timezone.utc):{STAMP}}-beef-001"
    requests.post(f"{fleet.urls[0]}/schedule.json", auth=(USER, PASSWORD), timeout=10,
                  data={"project": "adcrawler", "spider": "campaigns", "client": "fleet00", "jobid": late})
    wait_for(lambda: fleet.db.rows("SELECT 1 FROM sync_runs WHERE job_id = %s AND finished_at IS NOT NULL",
                                   (late,)), 60, "the late job to record its client")
    reason = fleet.db.scalar("SELECT outcome || ': ' || outcome_reasons FROM sync_runs WHERE job_id = %s", (late,))
    assert reason.startswith("skipped: synced at ") and reason.endswith("UTC, after this job was scheduled")
    assert fleet.mock.stats()["syncs"] == syncs


def test_a_client_pending_or_running_is_not_scheduled_again_and_the_lock_has_the_last_word(start_fleet):
    fleet = start_fleet("--hold-syncs", "2")  # every run stays going until released
    first = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10")
    assert first.returncode == 0, first.stderr
    wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'running'") == len(SLUGS),
             120, "every client's run to be going")
    jobs_before = sum(len(n.jobs()["running"]) for n in fleet.nodes)
    for job in (j for node in fleet.nodes for j in node.jobs()["running"]):  # the node's secret stays with it
        environ = open(f"/proc/{job['pid']}/environ", "rb").read()
        assert b"SCRAPYD_PASSWORD" not in environ and PASSWORD.encode() not in environ

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


def test_a_node_killed_mid_run_its_clients_go_to_their_next_node_in_the_same_dispatch(start_fleet):
    fleet = start_fleet("--hold-syncs", "8")  # each client's first 8 syncs answered, the rest held
    cmd, env = dispatch_command(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10", "--wait",
                                "--poll", "0.5")
    dead = fleet.nodes[0]
    lost = sorted(slug for slug, url in fleet.plan.items() if url == dead.url)
    assert lost
    first, out, err = _kill_mid_dispatch(fleet, cmd, env, dead, lost)
    # The lost clients waited for their killed runs' leases, ran on their next node, and the one
    # waiting dispatcher tells cron that every client succeeded.
    assert first.returncode == 0, out + err
    assert f"node {dead.url}: stopped answering; its clients go to their next node" in err
    assert out.strip().endswith(f"clients: {len(SLUGS)} succeeded"), out
    assert _latest_outcomes(fleet.db) == {slug: "succeeded" for slug in SLUGS}
    killed = fleet.db.rows("SELECT client_id, node, outcome_reasons FROM sync_runs WHERE outcome = 'interrupted'")
    assert sorted(r[0] for r in killed) == lost
    assert all(r[1] == dead.url and r[2] == "the process ended before the run did" for r in killed)
    moved = fleet.db.rows("SELECT client_id, node FROM sync_runs WHERE outcome = 'succeeded' AND client_id = ANY(%s)",
                          (lost,))
    assert sorted(r[0] for r in moved) == lost and dead.url not in {r[1] for r in moved}
    assert fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'succeeded'") == len(SLUGS)
    _all_stored_once(fleet)
    # The next node finished the killed runs' work: what they had stored was not synced again.
    # The hash of the nodes' random ports decides how many of the killed node's jobs a client came
    # from, so each new job names between one and all of them, and every one is named.
    runs = {r[0] for r in fleet.db.rows("SELECT run_id FROM sync_runs WHERE outcome = 'interrupted'")}
    finishing = [int(n) for n in re.findall(r"finishing (\d+) lost run\(s\)", out)]
    assert finishing and all(1 <= n <= len(runs) for n in finishing) and sum(finishing) >= len(runs), out
    _killed_runs_work_not_redone(fleet, lost)
    resumed = fleet.db.rows("SELECT client_id, (stats->>('adcrawler/client/' || client_id || '/campaigns_resumed'))"
                            "::int FROM sync_runs WHERE outcome = 'succeeded' AND client_id = ANY(%s)", (lost,))
    assert dict(resumed) == {slug: 8 for slug in lost}


def test_a_node_that_never_starts_its_jobs_has_them_moved_and_a_client_is_done_only_once_run(start_fleet):
    fleet = start_fleet(lazy=(HOSTS[0],))
    lazy = fleet.nodes[0]
    stuck = sorted(slug for slug, url in fleet.plan.items() if url == lazy.url)
    assert stuck

    # Waiting: the lazy node's jobs are cancelled once past the start limit; their clients run elsewhere.
    first = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "3", "--wait", "--poll",
                     "0.5", "--start-limit", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(stuck) > 3  # several jobs there, each cancelled in turn
    assert first.stderr.count("has not started in 2 s; cancelled") == -(-len(stuck) // 3), first.stderr
    assert first.stdout.strip().endswith(f"clients: {len(SLUGS)} succeeded"), first.stdout
    assert lazy.jobs()["pending"] == []

    # Not waiting (cron without --wait) leaves jobs pending there; the next dispatch finds them stale by
    # their scheduled time and moves them, and does not count them as done before they ran.
    assert dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10").returncode == 0
    registry = Registry.load(fleet.registry)
    assert sorted(c.slug for job in lazy.jobs()["pending"] for c in registry.select(job["args"]["client"])) == stuck
    wait_for(lambda: fleet.db.scalar("SELECT COUNT(*) FROM sync_runs WHERE outcome = 'succeeded'")
             == 2 * len(SLUGS) - len(stuck), 120, "the other nodes' runs to end")
    time.sleep(3)
    again = dispatch(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10", "--wait", "--poll",
                     "0.5", "--start-limit", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "has not started in" in again.stderr and "already pending" not in again.stdout
    assert again.stdout.strip().endswith(f"clients: {len(SLUGS)} succeeded"), again.stdout
    assert lazy.jobs()["pending"] == []
    runs = fleet.db.rows("SELECT client_id, node, outcome FROM sync_runs")
    assert lazy.url not in {r[1] for r in runs}
    assert Counter(r[0] for r in runs if r[2] == "succeeded") == Counter(SLUGS * 3) - Counter(stuck)


def test_a_client_moved_off_a_lazy_node_onto_one_then_killed_moves_again_in_the_same_dispatch(start_fleet):
    fleet = start_fleet("--hold-syncs", "8", lazy=(HOSTS[0],))
    lazy, dead = fleet.nodes[0], fleet.nodes[1]
    clients = Registry.load(fleet.registry).select("all")
    second = assign(clients, fleet.urls, set(fleet.urls) - {lazy.url})
    twice = sorted(slug for slug, url in fleet.plan.items() if url == lazy.url and second[slug] == dead.url)
    on_dead = sorted(slug for slug, url in second.items() if url == dead.url)
    assert twice
    cmd, env = dispatch_command(fleet.urls, "all", fleet.registry, fleet.pg_url, "--shard-size", "10", "--wait",
                                "--poll", "0.5", "--start-limit", "2")
    first, out, err = _kill_mid_dispatch(fleet, cmd, env, dead, on_dead)
    # Off the lazy node, then off the killed one: each client ends on the last node, in this dispatch.
    assert first.returncode == 0, out + err
    assert out.strip().endswith(f"clients: {len(SLUGS)} succeeded"), out
    assert _latest_outcomes(fleet.db) == {slug: "succeeded" for slug in SLUGS}
    last = dict(fleet.db.rows("SELECT client_id, node FROM sync_runs WHERE outcome = 'succeeded' AND "
                              "client_id = ANY(%s)", (twice,)))
    assert set(last) == set(twice) and set(last.values()) == {fleet.nodes[2].url}
    _all_stored_once(fleet)
    _killed_runs_work_not_redone(fleet, on_dead)


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
