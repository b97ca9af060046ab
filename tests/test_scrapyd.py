"""scrapyd deployment: the egg, the deploy target, and how the dispatcher spreads clients
(the fleet itself, on real nodes: tests/test_fleet.py)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import zipfile

import pytest
import requests
from scrapy.settings import Settings

from adcrawler.commands.dispatch import Command
from adcrawler.fleet import assign, rank, shards
from adcrawler.registry import Client, Registry
from harness.runner import DEMO_PASSWORD, REGISTRY, ROOT
from harness.scrapyd import BIN, PASSWORD, USER, node_env, start_nodes


def test_rank_is_stable_and_spreads_clients():
    nodes = [f"http://10.0.0.{i}:6800" for i in range(1, 5)]
    clients = [Client(f"client{i}", f"client{i}") for i in range(2000)]
    plan = assign(clients, nodes, set(nodes))
    counts = [list(plan.values()).count(n) for n in nodes]
    assert all(400 < c < 600 for c in counts)
    assert assign(clients, nodes, set(nodes)) == plan  # stable
    # A node going away moves only its own clients.
    fewer = assign(clients, nodes, set(nodes[:3]))
    assert all(fewer[c.slug] == plan[c.slug] for c in clients if plan[c.slug] != nodes[3])
    assert rank("x", nodes) == rank("x", list(reversed(nodes)))


def test_a_budget_group_lands_on_one_node_and_in_one_job():
    nodes = [f"http://10.0.0.{i}:6800" for i in range(1, 4)]
    clients = [Client(f"c{i:03d}", f"c{i:03d}", budget="acct" if i % 10 == 0 else None) for i in range(300)]
    plan = assign(clients, nodes, set(nodes))
    group = [c for c in clients if c.budget]
    assert len({plan[c.slug] for c in group}) == 1
    mine = [c for c in clients if plan[c.slug] == plan[group[0].slug]]
    jobs = shards(mine, 25)
    assert len(jobs) == -(-len(mine) // 25)
    assert sum(1 for job in jobs if group[0].slug in job) == 1
    assert [j for j in jobs if group[0].slug in j][0] >= [c.slug for c in group]  # together
    assert sorted(s for job in jobs for s in job) == sorted(c.slug for c in mine)
    assert max(map(len, jobs)) - min(map(len, jobs)) <= len(group)


def test_a_shard_travels_compactly_and_only_to_the_registry_it_was_cut_from(tmp_path):
    registry = Registry({f"client{i:04d}": Client(f"client{i:04d}", f"client{i:04d}") for i in range(1000)})
    chosen = sorted(set(sorted(registry.clients)[::5] + sorted(registry.clients)[1::7]))
    shard = registry.shard(chosen)
    assert len(shard) < 400
    assert sorted(c.slug for c in registry.select(shard)) == sorted(chosen)
    other = Registry(dict(list(registry.clients.items())[:999]), path="other.toml")
    with pytest.raises(ValueError, match="another client registry"):
        other.select(shard)
    with pytest.raises(ValueError, match="damaged"):
        registry.select(shard[:-10] + "!!!!")


@pytest.mark.parametrize("change", [{"client_id": "another-account"}, {"email_env": "OTHER_EMAIL"},
                                    {"password_env": "OTHER_PASSWORD"}, {"budget": "shared"}])
def test_a_shard_is_refused_by_a_registry_that_makes_one_of_its_clients_another(change):
    """Same slugs, but acme is another account, other credentials or another budget on the node."""
    dispatcher = Registry({"acme": Client("acme", "acme-corp"), "demo": Client("demo", "demo")})
    node = Registry({"acme": Client(**{"slug": "acme", "client_id": "acme-corp", **change}),
                     "demo": Client("demo", "demo")}, path="node.toml")
    shard = dispatcher.shard(["acme"])
    assert [c.client_id for c in dispatcher.select(shard)] == ["acme-corp"]
    with pytest.raises(ValueError, match="another client registry"):
        node.select(shard)


def test_the_egg_holds_the_crawler_only(egg):
    names = zipfile.ZipFile(egg).namelist()
    assert "adcrawler/clients.toml" in names and "adcrawler/settings.py" in names
    assert not [n for n in names if n.split("/")[0] in ("harness", "mock_api", "tests", "bench", "scripts")]
    assert not any(DEMO_PASSWORD.encode() in zipfile.ZipFile(egg).read(n) for n in names if n.endswith(".py"))


def test_scrapyd_client_schedules_through_the_shipped_target(egg, quiet_mock, pg_url, tmp_path):
    """The deploy target of scrapy.cfg, pointed at a test node: scrapyd-client schedules a job through it."""
    node = start_nodes(["127.0.0.1"], tmp_path, node_env(quiet_mock.url, pg_url, tmp_path, REGISTRY))[0]
    try:
        assert requests.get(f"{node.url}/daemonstatus.json", timeout=5).status_code == 401  # credentials required
        node.deploy(egg)
        cfg = (ROOT / "scrapy.cfg").read_text().replace("http://127.0.0.1:6800", node.url)
        (tmp_path / "scrapy.cfg").write_text(cfg)
        env = {**os.environ, "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": PASSWORD}
        proc = subprocess.run([str(BIN / "scrapyd-client"), "schedule", "-p", "adcrawler", "--arg", "client=demo",
                               "--arg", "dry_run=1", "campaigns"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "campaigns" in proc.stdout, proc.stdout + proc.stderr
        jobs = node.jobs()
        assert sum(len(jobs[state]) for state in ("pending", "running", "finished")) == 1
    finally:
        node.stop()


def test_the_systemd_units_verify_and_start_a_dispatch_the_dispatcher_accepts(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    units = ROOT / "deploy/systemd"
    service = (units / "adcrawler-dispatch.service").read_text()
    command = shlex.split(next(line for line in service.splitlines() if line.startswith("ExecStart="))[10:])
    assert command[0].endswith("/scrapy") and command[1] == "dispatch"
    parser, command_object = argparse.ArgumentParser(), Command()
    command_object.settings = Settings()
    command_object.add_options(parser)
    args, clients = parser.parse_known_args(command[2:])
    assert clients == ["all"] and args.wait  # the exit status tells systemd whether every client succeeded
    (tmp_path / "dispatch.env").write_text("SCRAPYD_USERNAME=ops\n")
    local = service.replace("/srv/adcrawler/.venv/bin/scrapy", str(BIN / "scrapy")).replace(
        "/srv/adcrawler", str(ROOT)).replace("/etc/adcrawler/dispatch.env", str(tmp_path / "dispatch.env"))
    (tmp_path / "adcrawler-dispatch.service").write_text(local)
    shutil.copy(units / "adcrawler-dispatch.timer", tmp_path)
    proc = subprocess.run([tool, "verify", "adcrawler-dispatch.service", "adcrawler-dispatch.timer"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
