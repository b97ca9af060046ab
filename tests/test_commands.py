"""What an operator types and sees: the project's commands, a dry run, the console, the simulator's settings."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from adcrawler.extensions.statsdump import prune
from adcrawler.store import LATEST
from harness.runner import DEMO_EMAIL, DEMO_PASSWORD, REGISTRY, ROOT, run_crawl
from tests.conftest import QUIET


def scrapy(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scrapy", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_clients_lists_the_registry_and_never_a_secret():
    proc = scrapy("clients", env={"AD_PLATFORM_EMAIL": DEMO_EMAIL, "AD_PLATFORM_PASSWORD": DEMO_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["slug", "client", "id", "email", "variable", "password", "variable", "set"]
    assert lines[1].split() == ["demo", "demo", "AD_PLATFORM_EMAIL", "AD_PLATFORM_PASSWORD", "yes"]
    assert lines[2].split()[:2] == ["acme", "acme-corp"]
    assert lines[-1] == "3 client(s) in adcrawler/clients.toml; no other slug"
    assert DEMO_PASSWORD not in proc.stdout + proc.stderr and DEMO_EMAIL not in proc.stdout + proc.stderr
    unset = scrapy("clients", env={"AD_PLATFORM_PASSWORD": ""})
    assert unset.stdout.splitlines()[1].split()[-1] == "no"


def test_migrate_applies_the_schema_alone_and_says_so(db):
    env = {"DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}
    first = scrapy("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{db.kind}: schema version 0 -> {LATEST}"
    again = scrapy("migrate", env=env)
    latest = LATEST
    assert again.stdout.strip() == f"{db.kind}: schema version {latest}, up to date (latest {latest})"
    assert db.scalar("SELECT COUNT(*) FROM campaigns") == 0  # tables, no data
    broken = scrapy("migrate", env={"DATABASE_URL": "postgresql://nobody:s3cret-pw@127.0.0.1:1/none"})
    assert broken.returncode == 1 and broken.stdout.startswith("adcrawler: cannot migrate: ")
    assert "s3cret-pw" not in broken.stdout + broken.stderr and "Traceback" not in broken.stderr


def test_runs_shows_a_clients_last_runs_newest_first(quiet_mock, db):
    for _ in range(2):
        result = run_crawl(quiet_mock.url, "demo", db.workdir, database_url=db.url)
        assert result.returncode == 0, result.output[-2000:]
    env = {"DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}
    proc = scrapy("runs", "demo", "-n", "5", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:6] == ["started", "(UTC)", "client", "took", "outcome", "seen/synced/failed"]
    rows, logs = lines[1:3], lines[3:-1]
    assert all(" demo " in r and " succeeded " in r and " 100/100/0 " in r for r in rows)
    assert len(logs) == 2 and all(Path(line.split(": log ")[1]).is_file() for line in logs)  # each run's own log
    assert all(f" {socket.gethostname()} pid " in r for r in rows)  # started by hand: the host and process
    assert lines[-1] == "2 run(s) of demo"
    # Newest first: the second run inserted nothing (100/0 ins/upd unchanged rows are not counted).
    assert re.search(r" 0/\d+ ", rows[0]) and " 100/0 " in rows[1]


def test_a_client_is_named_by_its_slug_or_its_client_id_and_an_unknown_name_is_an_error(quiet_mock, db):
    result = run_crawl(quiet_mock.url, "acme-corp", db.workdir, database_url=db.url)  # -a client= takes either
    assert result.returncode == 0 and result.stat("outcome", "acme-corp") == "succeeded", result.output[-2000:]
    env = {"DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}  # the packaged registry
    for name in ("acme", "acme-corp"):
        proc = scrapy("runs", name, env=env)
        assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "1 run(s) of acme (acme-corp)", proc.stdout
        assert " acme (acme-corp) " in proc.stdout.splitlines()[1]
    unknown = scrapy("runs", "acmee", env=env)
    assert unknown.returncode == 2 and "client 'acmee' is not in the registry" in unknown.stderr
    assert "known: acme (acme-corp), " in unknown.stderr and unknown.stdout == ""


def test_a_dry_run_lists_and_validates_but_writes_and_syncs_nothing(mock_factory, tmp_path):
    mock = mock_factory(*QUIET, "--campaigns", "30", "--malformed", "2")
    result = run_crawl(mock.url, "demo", tmp_path, arguments={"dry_run": "1"})
    assert result.returncode == 0, result.output[-3000:]
    platform = mock.stats()
    assert "demo" not in platform["syncs"] and "sync" not in platform["requests"]["demo"]
    assert not (tmp_path / "adcrawler.sqlite3").exists() and not (tmp_path / "stats").exists()
    assert result.output.splitlines()[-1].endswith(
        "Dry run complete, nothing written and no sync sent: demo: would store 28, quarantine 2 and sync 28 "
        "of 30 listed")  # two of the thirty records are malformed (no usable id)
    # The setting of an earlier version is not a silent switch: it is named as retired.
    retired = run_crawl(mock.url, "demo", tmp_path / "again", extra_env={"ADCRAWLER_DRY_RUN": "true"})
    assert "ADCRAWLER_DRY_RUN is retired and ignored: use -a dry_run=1" in retired.output


def test_the_console_of_a_run_is_a_page_a_person_reads(quiet_mock, tmp_path):
    result = run_crawl(quiet_mock.url, "demo", tmp_path)
    assert result.returncode == 0
    lines = result.output.splitlines()
    assert len(lines) < 30, result.output
    assert not any("WARNING" in line or "ERROR" in line for line in lines), result.output
    assert not any(word in result.output for word in ("Enabled extensions", "Dumping Scrapy stats",
                                                      "Overridden settings", "Crawled 0 pages"))
    summary = lines.index(next(line for line in lines if line.endswith("Summary:")))
    assert lines[summary + 1].split()[:4] == ["client", "outcome", "listed", "stored"]
    assert lines[summary + 2].split()[:5] == ["demo", "succeeded", "100", "100", "100"]
    assert lines[-1].endswith("Sync complete: 1 client(s) succeeded")
    # Everything else is in the stats file, named by time so that a listing is in run order.
    [stats] = (tmp_path / "stats").glob("*.json")
    assert re.fullmatch(r"\d{8}T\d{12}-[0-9a-f]{32}\.json", stats.name)
    debug = run_crawl(quiet_mock.url, "demo", tmp_path, extra_env={"LOG_LEVEL": "DEBUG"})
    assert "Dumping Scrapy stats" in debug.output


def test_old_stats_files_are_removed(tmp_path):
    now = time.time()
    for name, age_days in (("old.json", 31), ("new.json", 29), ("other.txt", 100)):
        path = tmp_path / name
        path.write_text("{}")
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    assert prune(tmp_path, 30, now) == [tmp_path / "old.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "other.txt"]
    assert prune(tmp_path, 0, now + 10**9) == []  # 0 keeps everything


def test_the_simulator_tells_the_crawler_its_clock(tmp_path):
    """The README's first real crawl: the settings the simulator writes are all the crawler needs."""
    env_file = tmp_path / "simulator.env"
    mock = subprocess.Popen([sys.executable, "-m", "mock_api", "--port", "0", "--time-scale", "0.01", "--seed", "3",
                             "--crawler-env", str(env_file)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = mock.stdout.readline().strip()
        for _ in range(200):
            if env_file.exists() and env_file.read_text().count("\n") >= 4:
                break
            time.sleep(0.05)
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert settings["AD_PLATFORM_API_URL"] == url and settings["ADCRAWLER_TIME_SCALE"] == "0.01"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCRAWLER_", "AD_PLATFORM_"))}
        env.update(settings, AD_PLATFORM_EMAIL=DEMO_EMAIL, AD_PLATFORM_PASSWORD=DEMO_PASSWORD,
                   ADCRAWLER_DATA_DIR=str(tmp_path), ADCRAWLER_CLIENTS_FILE=str(REGISTRY))
        crawl = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "campaigns", "-a", "client=demo"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=120)
    finally:
        mock.terminate()
        mock.communicate(timeout=10)
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    lines = crawl.stderr.splitlines()
    assert lines[-1].endswith("Sync complete: 1 client(s) succeeded")
    assert re.search(r"demo +succeeded +100 +100 +100 ", crawl.stderr)  # the summary's row: 100/100
    assert len(lines) < 30, crawl.stderr  # default faults and all: a page a person reads


def test_crawl_help_names_the_spiders_arguments():
    proc = scrapy("crawl", "-h")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "-a client=...: a client (its slug or its client id)" in text
    assert "-a dry_run=...: 1: list and validate" in text


def test_runs_stale_lists_every_client_with_its_last_success_and_exits_1_when_one_is_stale(quiet_mock, db):
    env = {"DATABASE_URL": db.url, "ADCRAWLER_DATA_DIR": str(db.workdir)}  # the packaged registry
    ok = run_crawl(quiet_mock.url, "demo", db.workdir, database_url=db.url)
    refused = run_crawl(quiet_mock.url, "acme", db.workdir, database_url=db.url,
                        extra_env={"AD_PLATFORM_PASSWORD": "wrong"})
    assert ok.returncode == 0 and refused.returncode == 1, refused.output[-2000:]
    proc = scrapy("runs", "--stale", "12h", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["state", "client", "last", "success", "(UTC)", "age", "last", "outcome", "reasons"]
    rows = {line.split()[1]: line for line in lines[1:-1]}
    assert set(rows) == {"acme", "demo", "globex"}  # every registry client, the one that never ran included
    assert rows["demo"].startswith("ok ") and " succeeded" in rows["demo"]
    assert re.match(r"stale +acme \(acme-corp\) +never +- +failed +.*refused", rows["acme"]), rows["acme"]
    assert re.match(r"stale +globex +never +- +never ran$", rows["globex"]), rows["globex"]
    assert lines[-1] == "2 of 3 client(s) stale: no success within 12h"
    time.sleep(1.1)  # demo's success is now older than a second
    older = scrapy("runs", "--stale", "1", env=env)
    assert older.stdout.splitlines()[-1] == "3 of 3 client(s) stale: no success within 1s"
    bad = scrapy("runs", "--stale", "soon", env=env)
    assert bad.returncode == 2 and "expected an age like 12h" in bad.stderr
