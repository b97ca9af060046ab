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

from adcrawler.timescale import crawler_env

ROOT = Path(__file__).resolve().parent.parent
DEMO_EMAIL = "admin@mixoads.com"
DEMO_PASSWORD = "SuperSecret123!"


@dataclass
class CrawlResult:
    returncode: int
    output: str
    elapsed: float
    stats: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str, client: str | None = None, default: Any = 0) -> Any:
        from adcrawler.stats import key

        return self.stats.get(key(name, client), default)


def run_crawl(api_url: str, clients: str, workdir: Path, *, scale: float = 0.01,
              database_url: str = "", extra_env: dict[str, str] | None = None,
              settings: dict[str, str] | None = None, timeout: float = 300) -> CrawlResult:
    """Crawl ``clients`` into ``workdir`` (SQLite file, stats, spool) unless
    ``database_url`` names another database."""
    workdir.mkdir(parents=True, exist_ok=True)
    stats_dir = workdir / "stats"
    env = {
        **os.environ,
        **crawler_env(scale),
        "AD_PLATFORM_API_URL": api_url,
        "AD_PLATFORM_EMAIL": DEMO_EMAIL,
        "AD_PLATFORM_PASSWORD": DEMO_PASSWORD,
        "DATABASE_URL": database_url,
        "ADCRAWLER_SQLITE_PATH": str(workdir / "adcrawler.sqlite3"),
        "ADCRAWLER_STATS_DIR": str(stats_dir),
        "ADCRAWLER_SPOOL_DIR": str(workdir / "spool"),
        **(extra_env or {}),
    }
    before = set(stats_dir.glob("*.json")) if stats_dir.exists() else set()
    cmd = [sys.executable, "-m", "scrapy", "crawl", "campaigns", "-a", f"client={clients}"]
    for name, value in (settings or {}).items():
        cmd += ["-s", f"{name}={value}"]
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - began
    new = sorted(set(stats_dir.glob("*.json")) - before) if stats_dir.exists() else []
    stats = json.loads(new[-1].read_text()) if new else {}
    return CrawlResult(proc.returncode, proc.stdout + proc.stderr, elapsed, stats)
