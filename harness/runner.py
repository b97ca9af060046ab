"""Run ``scrapy crawl campaigns`` as a child process against a simulator.

Shared by the demo, the end-to-end tests and the benchmarks, so all three run
the crawler exactly as a user does: the real command, its exit status, its
stats file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adcrawler.stats import key

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "harness" / "clients.toml"  # lets the benchmarks make up clients
DEMO_EMAIL = "admin@mixoads.com"
DEMO_PASSWORD = "SuperSecret123!"


@dataclass
class CrawlResult:
    returncode: int
    output: str
    elapsed: float
    stats: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str, client: str | None = None, default: Any = 0) -> Any:
        return self.stats.get(key(name, client), default)


def crawl_command(api_url: str, clients: str, workdir: Path, *, scale: float = 0.01,
                  database_url: str = "", extra_env: dict[str, str] | None = None,
                  settings: dict[str, str] | None = None, arguments: dict[str, str] | None = None,
                  ) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a crawl into ``workdir`` (SQLite file, stats, spool),
    unless ``database_url`` names another database, against a platform whose clock runs ``scale``
    times the real one."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ADCRAWLER_TIME_SCALE": repr(scale),
        "AD_PLATFORM_API_URL": api_url,
        "AD_PLATFORM_EMAIL": DEMO_EMAIL,
        "AD_PLATFORM_PASSWORD": DEMO_PASSWORD,
        "DATABASE_URL": database_url,
        "ADCRAWLER_DATA_DIR": str(workdir),  # the SQLite file, stats/ and spool/
        "ADCRAWLER_CLIENTS_FILE": str(REGISTRY),
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "scrapy", "crawl", "campaigns", "-a", f"client={clients}"]
    for name, value in (arguments or {}).items():
        cmd += ["-a", f"{name}={value}"]
    for name, value in (settings or {}).items():
        cmd += ["-s", f"{name}={value}"]
    return cmd, env


def start_crawl(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
    """Start a crawl in the background (same arguments as :func:`crawl_command`)."""
    cmd, env = crawl_command(*args, **kwargs)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def latest_stats(workdir: Path, before: set[Path] | None = None) -> dict[str, Any]:
    stats_dir = workdir / "stats"
    new = sorted(set(stats_dir.glob("*.json")) - (before or set()), key=lambda p: p.stat().st_mtime)
    return json.loads(new[-1].read_text()) if new else {}


def run_crawl(api_url: str, clients: str, workdir: Path, *, timeout: float = 300, **kwargs: Any) -> CrawlResult:
    """Run a crawl to its end (same arguments as :func:`crawl_command`)."""
    cmd, env = crawl_command(api_url, clients, workdir, **kwargs)
    stats_dir = workdir / "stats"
    before = set(stats_dir.glob("*.json")) if stats_dir.exists() else set()
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - began
    return CrawlResult(proc.returncode, proc.stdout + proc.stderr, elapsed, latest_stats(workdir, before))
