"""One settings namespace: every documented name works from -s, the environment and .env,
a bad value is one line naming it (exit 2), and JSON logs are JSON from the first line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from scrapy.cmdline import execute
from scrapy.settings import Settings
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from adcrawler.auth import BearerTokenMiddleware
from adcrawler.config import SCRAPY, SETTINGS
from adcrawler.extensions.metrics import PrometheusMetrics
from adcrawler.extensions.statsdump import StatsDump
from adcrawler.ledger import RunLedger
from adcrawler.pipelines import StorePipeline
from adcrawler.scheduler import BudgetScheduler
from adcrawler.spiders.campaigns import CampaignsSpider
from adcrawler.store import Database
from harness.runner import ROOT, run_crawl


def scrapy(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``scrapy ARGV`` in this process, as the command line does."""
    old = sys.argv
    sys.argv = ["scrapy", *argv]
    try:
        execute()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def _crawler(**values):
    settings = Settings()
    settings.setmodule("adcrawler.settings")
    crawler = get_crawler(CampaignsSpider, {**settings.copy_to_dict(), "TWISTED_REACTOR_ENABLED": False, **values})
    crawler.spider = crawler._create_spider(client="demo")
    return crawler


def _component(cls, crawler):
    return build_from_crawler(cls, crawler)


# Each setting, a value that differs from its default, and where a component reads it.
REACHES = {
    "AD_PLATFORM_API_URL": ("http://10.1.2.3:8080", lambda c: c.spider.api_url, "http://10.1.2.3:8080"),
    "DATABASE_URL": ("sqlite:///elsewhere.sqlite3", lambda c: c.get_extension(Database).database_url,
                     "sqlite:///elsewhere.sqlite3"),
    "ADCRAWLER_DATA_DIR": ("some/where", lambda c: str(_component(StorePipeline, c).spool_dir), "some/where/spool"),
    "ADCRAWLER_CLIENTS_FILE": (str(ROOT / "harness/clients.toml"), lambda c: c.spider.clients[0].slug, "demo"),
    "ADCRAWLER_RATE_LIMIT": ("7", lambda c: _component(BudgetScheduler, c).limit, 7),
    "ADCRAWLER_RATE_WINDOW": ("30", lambda c: _component(BudgetScheduler, c).window, 30.0),
    "ADCRAWLER_PAGE_SIZE": ("33", lambda c: c.spider.page_size, 33),
    "ADCRAWLER_MAX_CAMPAIGNS": ("500", lambda c: c.get_extension(RunLedger).max_campaigns, 500),
    "ADCRAWLER_TIMEOUT_AUTH": ("4", lambda c: _component(BearerTokenMiddleware, c).timeout, 4.0),
    "ADCRAWLER_TIMEOUT_LIST": ("5", lambda c: c.spider.timeouts["list"], 5.0),
    "ADCRAWLER_TIMEOUT_SYNC": ("6", lambda c: c.spider.timeouts["sync"], 6.0),
    "ADCRAWLER_OUTAGE_LIMIT": ("120", lambda c: _component(BearerTokenMiddleware, c).outage_limit, 120.0),
    "ADCRAWLER_REMOVAL_GUARD": ("0.2", lambda c: _component(StorePipeline, c).removal_guard, 0.2),
    "ADCRAWLER_KEEP_DAYS": ("14", lambda c: _component(StatsDump, c).keep_days, 14.0),
    "ADCRAWLER_PUSHGATEWAY_URL": ("http://127.0.0.1:9091", lambda c: _component(PrometheusMetrics, c).pushgateway,
                                  "http://127.0.0.1:9091"),
    "ADCRAWLER_METRICS_PORT": ("9199", lambda c: _component(PrometheusMetrics, c).port, 9199),
    "ADCRAWLER_SYNC_MAX_AGE": ("60", lambda c: _component(PrometheusMetrics, c).run["adcrawler_sync_max_age_seconds"],
                               60.0),
    "ADCRAWLER_TIME_SCALE": ("0.5", lambda c: _component(BudgetScheduler, c).window, 30.0),
}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.name in REACHES], ids=lambda s: s.name)
def test_every_setting_reaches_what_reads_it(setting):
    given, read, expected = REACHES[setting.name]
    assert read(_crawler(**{setting.name: given, "ADCRAWLER_METRICS_PORT": "9199"})) == expected


def test_every_setting_is_read_somewhere():
    # ADCRAWLER_LOG_JSON: test_json_logs_from_the_first_line_to_the_last; ADCRAWLER_SCRAPYD_NODES: the fleet tests.
    assert {s.name for s in SETTINGS} - set(REACHES) == {"ADCRAWLER_LOG_JSON", "ADCRAWLER_SCRAPYD_NODES"}
    assert len(SETTINGS) <= 20 and all(s.kind.bad for s in SETTINGS)


@pytest.mark.parametrize("name, kind", [*((s.name, s.kind) for s in SETTINGS), *SCRAPY.items()],
                         ids=[*(s.name for s in SETTINGS), *SCRAPY])
def test_a_bad_value_is_one_line_naming_the_setting_and_exit_2(name, kind, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, out, err = scrapy(["crawl", "campaigns", "-a", "client=demo", "-s", f"{name}={kind.bad}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert name in lines[0] and kind.form in lines[0] and "Traceback" not in err


def test_a_bad_scrapy_value_in_the_environment_is_one_line_too():
    proc = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "campaigns", "-a", "client=demo"], cwd=ROOT,
                          env={**os.environ, "CONCURRENT_REQUESTS": "abc"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "adcrawler: CONCURRENT_REQUESTS='abc': expected a whole number > 0")


@pytest.mark.parametrize("name, said", [
    ("DATABSE_URL", "DATABSE_URL is not a setting and is ignored: did you mean DATABASE_URL?"),
    ("AD_PLATFORM_API_ULR", "AD_PLATFORM_API_ULR is not a setting and is ignored: did you mean AD_PLATFORM_API_URL?"),
    ("AD_PLATFORM_PASWORD", "did you mean AD_PLATFORM_PASSWORD?"),
    ("ADCRAWLER_RATE_LIMT", "did you mean ADCRAWLER_RATE_LIMIT?"),
    ("ADCRAWLER_RETRY_TIMES", "ADCRAWLER_RETRY_TIMES is retired and ignored: now a fixed value"),
    ("ADCRAWLER_SQLITE_PATH", "ADCRAWLER_SQLITE_PATH is retired and ignored: the SQLite file, the spool and the "
                              "stats live in ADCRAWLER_DATA_DIR"),
])
def test_a_misspelt_or_retired_name_is_said_by_every_command(name, said, tmp_path):
    env = {**os.environ, name: "1"}
    for command in (["crawl", "campaigns", "-a", "client=nosuch"], ["runs"], ["clients"]):
        proc = subprocess.run([sys.executable, "-m", "scrapy", *command], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "ADCRAWLER_DATA_DIR": str(tmp_path)}, timeout=60)
        assert said in proc.stderr, (command, proc.stderr)


def test_environment_and_dotenv_use_the_same_names(tmp_path):
    # A copy of the project with its own .env (the real project's .env is the developer's).
    shutil.copytree(ROOT / "adcrawler", tmp_path / "adcrawler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "scrapy.cfg", tmp_path / "scrapy.cfg")
    (tmp_path / ".env").write_text("ADCRAWLER_PAGE_SIZE=33\nCONCURRENT_REQUESTS=77\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCRAWLER_", "AD_PLATFORM_"))}
    env.update(PYTHONPATH=str(tmp_path), ADCRAWLER_RATE_LIMIT="12")

    def get(name: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "scrapy", "settings", "--get", name], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert get("ADCRAWLER_PAGE_SIZE") == "33" and get("CONCURRENT_REQUESTS") == "77"
    assert get("ADCRAWLER_RATE_LIMIT") == "12"


def test_a_broken_client_registry_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    registry = tmp_path / "clients.toml"
    registry.write_text("[clients.acme\nclient_id = 1\n")
    code, _, err = scrapy(["crawl", "campaigns", "-a", "client=all", "-s", f"ADCRAWLER_CLIENTS_FILE={registry}"],
                          capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not valid TOML" in err
    code, _, err = scrapy(["crawl", "campaigns", "-a", "client=no way"], capsys)
    assert code == 2 and err.strip().startswith("adcrawler: client 'no way' is not in the registry")


def test_json_logs_from_the_first_line_to_the_last(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", "0.01", "--campaigns", "15", "--seed", "3")
    result = run_crawl(mock.url, "demo", tmp_path, extra_env={
        "ADCRAWLER_LOG_JSON": "true", "LOG_LEVEL": "DEBUG", "ADCRAWLER_TIMEOUT": "5"})
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.output.splitlines()]  # every line parses
    # Our start-up warning, then Scrapy's own first line, as JSON too.
    assert lines[0]["message"].startswith("ADCRAWLER_TIMEOUT is not a setting and is ignored")
    assert lines[1]["message"].startswith("Scrapy 2.19.0 started") and lines[1]["logger"] == "scrapy.utils.log"
    assert lines[-1]["message"] == "Sync complete: 1 client(s) succeeded"
    assert any(x["message"].startswith("Storing into sqlite") for x in lines)
    assert any("Overridden settings" in x["message"] for x in lines)
    assert all(x["run_id"] == result.stats["adcrawler/run_id"] for x in lines if "Progress" in x["message"])
    bad = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_LOG_JSON": "true", "ADCRAWLER_RATE_WINDOW": "x"})
    assert bad.returncode == 2
    [line] = bad.output.splitlines()
    assert "ADCRAWLER_RATE_WINDOW" in json.loads(line)["message"]
