"""Run a child process and measure it: wall time, CPU seconds and peak memory (rusage)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


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
