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

from adcrawler import config
from adcrawler.config import SETTINGS
from adcrawler.dispatch import main as dispatch_main
from harness.runner import ROOT, run_crawl

# A valid value of each form that differs from every default.
GOOD = {
    config.COUNT: "7", config.COUNT_OR_ZERO: "3", config.PORT: "9199", config.SECONDS: "2.5",
    config.SECONDS_OR_ZERO: "4", config.BOOL: "true", config.HTTP_URL: "http://10.1.2.3:8080",
    config.OPTIONAL_URL: "http://127.0.0.1:9091", config.DATABASE: "sqlite:///elsewhere.sqlite3",
    config.PATH: "some/where", config.OPTIONAL_PATH: "some/stats",
    config.REGISTRY: str(ROOT / "adcrawler/clients.toml"),
    config.HOST: "0.0.0.0", config.LOG_LEVEL: "WARNING", config.STATUSES: "500,503", config.JOB: "nightly",
    config.URLS: "http://n1:6800,http://n2:6800", config.DAYS: "14", config.QUARANTINE_ALERT: "every",
}
CRAWL = [s for s in SETTINGS if s.command == "crawl"]
# Each typed value as `scrapy settings --get` prints it.
PRINTED = {config.STATUSES: "(500, 503)", config.BOOL: "True", config.LOG_LEVEL: "WARNING",
           config.HTTP_URL: "http://10.1.2.3:8080"}


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


@pytest.mark.parametrize("setting", CRAWL, ids=lambda s: s.name)
def test_every_setting_given_with_s_reaches_what_reads_it(setting, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    good = GOOD[setting.kind]
    target = setting.scrapy or setting.name
    code, out, err = scrapy(["settings", "-s", f"{setting.name}={good}", "--get", target], capsys)
    assert code == 0, err
    expected = str(config.parse(setting.name, good)) if setting.scrapy else good
    assert out.strip() == expected


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind.bad], ids=lambda s: s.name)
def test_a_bad_value_is_one_line_naming_the_setting_and_exit_2(setting, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    if setting.command == "dispatch":
        monkeypatch.setenv(setting.name, setting.kind.bad)
        monkeypatch.setenv("SCRAPYD_USERNAME", "u")
        monkeypatch.setenv("SCRAPYD_PASSWORD", "p")
        code = dispatch_main(["--dry-run", "demo"])
        out, err = capsys.readouterr()
    else:
        code, out, err = scrapy(["crawl", "campaigns", "-a", "client=demo", "-s",
                                 f"{setting.name}={setting.kind.bad}"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert setting.name in lines[0] and setting.kind.form in lines[0] and "Traceback" not in err


def test_the_settings_without_a_bad_value_are_the_optional_paths():
    assert {s.name for s in SETTINGS if not s.kind.bad} == {"ADCRAWLER_STATS_DIR"}


def test_environment_and_dotenv_use_the_same_names(tmp_path):
    # A copy of the project with its own .env (the real project's .env is the developer's).
    shutil.copytree(ROOT / "adcrawler", tmp_path / "adcrawler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "scrapy.cfg", tmp_path / "scrapy.cfg")
    (tmp_path / ".env").write_text("ADCRAWLER_PAGE_SIZE=33\nADCRAWLER_CONCURRENT_REQUESTS=77\n")
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
    assert code == 2 and err.strip() == "adcrawler: invalid client slug 'no way'"


def test_json_logs_from_the_first_line_to_the_last(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", "0.01", "--campaigns", "15", "--seed", "3")
    result = run_crawl(mock.url, "demo", tmp_path, extra_env={
        "ADCRAWLER_LOG_JSON": "true", "ADCRAWLER_LOG_LEVEL": "DEBUG", "ADCRAWLER_TIMEOUT": "5"})
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.output.splitlines()]  # every line parses
    # Our start-up warning, then Scrapy's own first line, as JSON too.
    assert lines[0]["message"].startswith("unknown setting ADCRAWLER_TIMEOUT is ignored")
    assert lines[1]["message"].startswith("Scrapy 2.19.0 started") and lines[1]["logger"] == "scrapy.utils.log"
    assert lines[-1]["message"] == "Sync complete: 1 client(s) succeeded"
    assert any(x["message"].startswith("Storing into sqlite") for x in lines)
    assert any("Overridden settings" in x["message"] for x in lines)
    assert all(x["run_id"] == result.stats["adcrawler/run_id"] for x in lines if "Progress" in x["message"])
    bad = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_LOG_JSON": "true", "ADCRAWLER_RATE_WINDOW": "x"})
    assert bad.returncode == 2
    [line] = bad.output.splitlines()
    assert "ADCRAWLER_RATE_WINDOW" in json.loads(line)["message"]
