"""Run a child process and measure it: wall time, CPU seconds and peak memory (rusage); a crawl
measured that way, and the ratios the sections report."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adcrawler.stats import key
from harness.runner import ROOT, crawl_command, latest_stats
from mock_api.process import MockProcess


@dataclass
class Measured:
    returncode: int
    output: str
    wall: float  # seconds
    cpu: float  # user + system seconds of the child
    max_rss_mb: float


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Measured:
    with tempfile.TemporaryFile(mode="w+") as out:
        began = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Measured(proc.returncode, out.read(), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def crawl(mock: MockProcess, clients: list[str], scale: float, tmp: Path, settings: dict[str, str] | None = None,
          timeout: float = 7200, database_url: str = "") -> tuple[Measured, dict[str, Any]]:
    """One crawl of ``clients`` against ``mock``, measured, and its stats file."""
    cmd, env = crawl_command(mock.url, ",".join(clients), tmp, scale=scale, settings=settings,
                             database_url=database_url)
    measured = run_measured(cmd, env, ROOT, timeout)
    return measured, latest_stats(tmp)


def ratios(stats: dict[str, Any], clients: list[str]) -> list[float]:
    return [stats[key("elapsed_seconds", c)] / stats[key("lower_bound_seconds", c)] for c in clients]


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 3),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
            "worst": round(ordered[-1], 3)}


def check(measured: Measured, what: str) -> None:
    if measured.returncode != 0:
        raise SystemExit(f"{what} failed ({measured.returncode}):\n{measured.output[-3000:]}")
