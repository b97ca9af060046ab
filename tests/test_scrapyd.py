"""scrapyd deployment: real nodes, a real egg, clients spread over nodes, never twice at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from adcrawler.dispatch import assign, rank
from harness.runner import DEMO_EMAIL, DEMO_PASSWORD, REGISTRY, ROOT
from harness.timescale import crawler_env
from tests.db import Db

USER, PASSWORD = "ops", "node-secret-1"
CLIENTS = ["demo", "acme", "globex", "initech", "umbrella"]


def test_rank_is_stable_and_spreads_clients():
    nodes = [f"http://10.0.0.{i}:6800" for i in range(1, 5)]
    clients = [f"client{i}" for i in range(2000)]
    plan = assign(clients, nodes, set(nodes))
    counts = [list(plan.values()).count(n) for n in nodes]
    assert all(400 < c < 600 for c in counts)
    assert assign(clients, nodes, set(nodes)) == plan  # stable
    # A node going away moves only its own clients.
    fewer = assign(clients, nodes, set(nodes[:3]))
    assert all(fewer[c] == plan[c] for c in clients if plan[c] != nodes[3])
    assert rank("x", nodes) == rank("x", list(reversed(nodes)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def egg(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("egg") / "adcrawler.egg"
    subprocess.run([str(Path(sys.executable).parent / "scrapyd-deploy"), "--build-egg", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture
def nodes(tmp_path, quiet_mock, pg_url):
    """Two scrapyd nodes started with deploy/scrapyd/run-node; jobs reach the simulator and PostgreSQL."""
    env = {**os.environ, **crawler_env(0.01), "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": PASSWORD,
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "AD_PLATFORM_API_URL": quiet_mock.url,
           "AD_PLATFORM_EMAIL": DEMO_EMAIL, "AD_PLATFORM_PASSWORD": DEMO_PASSWORD, "DATABASE_URL": pg_url,
           "ADCRAWLER_STATS_DIR": str(tmp_path / "stats"), "ADCRAWLER_SPOOL_DIR": str(tmp_path / "spool"),
           "ADCRAWLER_CLIENTS_FILE": str(REGISTRY)}  # initech and umbrella are not in the packaged one
    env.pop("PYTHONPATH", None)  # jobs must run from the deployed egg
    procs, urls = [], []
    for i in range(2):
        home = tmp_path / f"node{i}"
        home.mkdir()
        port = _free_port()
        procs.append(subprocess.Popen([str(ROOT / "deploy/scrapyd/run-node"), "--port", str(port)], cwd=home,
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{url}/daemonstatus.json", auth=(USER, PASSWORD), timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"scrapyd at {url} did not start"
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def _deploy(url: str, egg: Path) -> None:
    with egg.open("rb") as fh:
        answer = requests.post(f"{url}/addversion.json", auth=(USER, PASSWORD), timeout=30,
                               data={"project": "adcrawler", "version": "1"}, files={"egg": fh}).json()
    assert answer["status"] == "ok", answer
    assert answer["spiders"] == 1


def _dispatch(urls: list[str], clients: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": PASSWORD,
           "ADCRAWLER_CLIENTS_FILE": str(REGISTRY)}
    return subprocess.run([sys.executable, "-m", "adcrawler.dispatch", "--nodes", ",".join(urls), clients],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_egg_holds_the_crawler_only(egg):
    import zipfile

    names = zipfile.ZipFile(egg).namelist()
    assert "adcrawler/clients.toml" in names and "adcrawler/settings.py" in names
    assert not [n for n in names if n.split("/")[0] in ("harness", "mock_api", "tests", "bench", "scripts")]
    assert not any(DEMO_PASSWORD.encode() in zipfile.ZipFile(egg).read(n) for n in names if n.endswith(".py"))


def test_clients_spread_over_nodes_and_never_run_twice(nodes, egg, quiet_mock, pg_url, tmp_path):
    assert requests.get(f"{nodes[0]}/daemonstatus.json", timeout=5).status_code == 401  # credentials required
    for url in nodes:
        _deploy(url, egg)
    first = _dispatch(nodes, ",".join(CLIENTS))
    assert first.returncode == 0, first.stderr
    again = _dispatch(nodes, ",".join(CLIENTS))  # while the first jobs are pending or running
    assert again.stdout.count("already pending or running") == len(CLIENTS), again.stdout

    deadline = time.monotonic() + 180
    finished: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        jobs = {url: requests.get(f"{url}/listjobs.json", params={"project": "adcrawler"},
                                  auth=(USER, PASSWORD), timeout=5).json() for url in nodes}
        if all(not j["pending"] and not j["running"] for j in jobs.values()):
            finished = {url: [job["id"].split("--")[0] for job in j["finished"]] for url, j in jobs.items()}
            break
        time.sleep(0.5)
    assert finished, "jobs did not finish"
    plan = assign(CLIENTS, nodes, set(nodes))
    for url in nodes:
        assert sorted(finished[url]) == sorted(c for c in CLIENTS if plan[c] == url)

    db = Db(tmp_path, pg_url)
    client_ids = {"acme": "acme-corp"}
    rows = dict(db.rows("SELECT client_id, COUNT(*) FROM campaigns WHERE sync_status = 'synced' GROUP BY 1"))
    assert rows == {client_ids.get(c, c): 100 for c in CLIENTS}
    outcomes = db.rows("SELECT DISTINCT outcome FROM sync_runs")
    assert outcomes == [("succeeded",)]
    syncs = quiet_mock.stats()["syncs"]
    assert all(set(syncs[client_ids.get(c, c)].values()) == {1} for c in CLIENTS)


def test_scrapyd_client_schedules_through_the_shipped_target(nodes, egg, tmp_path):
    """The deploy target of scrapy.cfg, pointed at a test node: scrapyd-client schedules a job through it."""
    _deploy(nodes[0], egg)
    cfg = (ROOT / "scrapy.cfg").read_text().replace("http://127.0.0.1:6800", nodes[0])
    (tmp_path / "scrapy.cfg").write_text(cfg)
    env = {**os.environ, "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": PASSWORD}
    proc = subprocess.run([str(Path(sys.executable).parent / "scrapyd-client"), "schedule", "-p", "adcrawler",
                           "--arg", "client=demo", "--arg", "dry_run=1", "campaigns"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "campaigns" in proc.stdout, proc.stdout + proc.stderr
    jobs = requests.get(f"{nodes[0]}/listjobs.json", params={"project": "adcrawler"}, auth=(USER, PASSWORD),
                        timeout=10).json()
    assert sum(len(jobs[state]) for state in ("pending", "running", "finished")) == 1
