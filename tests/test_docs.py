"""The documentation names exactly what the code has: settings, stats, metrics, faults, the dashboard."""

from __future__ import annotations

import json
import re

from adcrawler.config import SETTINGS
from adcrawler.extensions.metrics import METRICS
from adcrawler.retry import PUBLIC
from adcrawler.stats import COUNTERS, FINAL
from adcrawler.store.migrations import DOCS
from harness.runner import ROOT
from scripts import docs

REFERENCE = (ROOT / "docs" / "reference.md").read_text()
README = (ROOT / "README.md").read_text()


def _table(name: str) -> list[str]:
    block = REFERENCE.split(f"<!-- {name}:start -->")[1].split(f"<!-- {name}:end -->")[0]
    return re.findall(r"^\| `([^`]+)`", block, re.M)


def test_reference_tables_are_the_code_lists_in_both_directions():
    assert docs.render(REFERENCE) == REFERENCE, "run: python -m scripts.docs"
    assert _table("settings") == [s.name for s in SETTINGS]
    assert _table("stats") == [*COUNTERS, *FINAL]
    assert _table("meta") == list(PUBLIC)
    assert _table("schema") == list(DOCS)
    assert _table("metrics") == [f"{m.name}_total" if m.kind == "counter" else m.name for m in METRICS]


def test_the_readme_points_to_the_reference_and_holds_no_table_of_its_own():
    assert "docs/reference.md" in README
    assert not re.search(r"<!-- [a-z]+:(start|end) -->", README)


def test_env_example_lists_every_setting_and_no_other():
    env_example = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", env_example, re.M))
    credentials = {"AD_PLATFORM_EMAIL", "AD_PLATFORM_PASSWORD"}
    assert names - credentials == {s.name for s in SETTINGS}


def test_dashboard_queries_only_exported_metrics():
    exported = {f"{m.name}_total" if m.kind == "counter" else m.name for m in METRICS}
    dashboard = json.loads((ROOT / "deploy/grafana/adcrawler-dashboard.json").read_text())
    used = {m for panel in dashboard["panels"] for target in panel["targets"]
            for m in re.findall(r"adcrawler_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported
    assert not any("increase(" in t["expr"] or "rate(" in t["expr"] for p in dashboard["panels"] for t in p["targets"])
    alerts = (ROOT / "deploy/prometheus/adcrawler-alerts.yml").read_text()
    assert set(re.findall(r"adcrawler_[a-z_]+", alerts)) <= exported
