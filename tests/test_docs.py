"""The documentation and the dashboard name only what exists, and everything that does."""

from __future__ import annotations

import json
import re

from adcrawler.extensions.metrics import StatsMetrics
from harness.runner import ROOT
from adcrawler.stats import COUNTERS, FINAL

README = (ROOT / "README.md").read_text()
SETTINGS = re.findall(r'config\("([A-Z_]+)"', (ROOT / "adcrawler/settings.py").read_text())


def test_every_setting_is_documented_and_in_env_example():
    env_example = (ROOT / ".env.example").read_text()
    assert len(SETTINGS) > 30
    for name in SETTINGS:
        short = name.replace("ADCRAWLER_AUTOTHROTTLE_", "_")
        assert name in README or short in README, name
        assert f"{name}=" in env_example or f"# {name}=" in env_example, name


def test_every_stat_key_is_documented():
    for name in [*COUNTERS, *FINAL]:
        assert f"`{name}`" in README or f"`{name}`," in README, name


def test_dashboard_queries_only_exported_metrics():
    stats = {f"adcrawler/client/c/{name}": 1 for name in COUNTERS}
    stats.update({"adcrawler/client/c/responses/sync_200": 1, "adcrawler/client/c/retries/http_503": 1,
                  "adcrawler/client/c/campaigns_expected": 1, "adcrawler/client/c/elapsed_seconds": 1,
                  "adcrawler/client/c/lower_bound_seconds": 1, "adcrawler/client/c/outcome": "succeeded"})
    extra = {"c": {n: ("", 1.0) for n in ("adcrawler_run_in_progress", "adcrawler_last_success_timestamp_seconds",
                                           "adcrawler_run_start_timestamp_seconds")}}
    exported = set()
    for family in StatsMetrics(lambda: (stats, extra)).collect():
        exported.update({family.name, f"{family.name}_total"})
    dashboard = json.loads((ROOT / "deploy/grafana/adcrawler-dashboard.json").read_text())
    used = {m for panel in dashboard["panels"] for target in panel["targets"]
            for m in re.findall(r"adcrawler_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported
    for metric in used:
        assert metric in README, metric
