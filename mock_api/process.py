"""Run ``python -m mock_api`` as a child process (for tests, the demo and benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any


class MockProcess:
    """Start the simulator on a free port; ``url`` is read from its first stdout line.

    Use as a context manager; the process is stopped by its PID on exit.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 15.0, port: int = 0):
        self.args = ["--port", str(port), *args]
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> "MockProcess":
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_api", *self.args],
            # Unbuffered, so that reading the first line leaves the rest for stop().
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=env,
        )
        line = self._first_line()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"mock_api did not start: {line!r}")
        self.url = line.strip()
        return self

    def _first_line(self) -> str:
        import selectors

        assert self.proc and self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(self.startup_timeout):
            return ""
        return self.proc.stdout.readline().decode()

    def stop(self) -> str:
        """Stop the process; returns whatever it printed after the first line."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.proc = None
        return (out + err).decode(errors="replace")

    def __enter__(self) -> "MockProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__mock__/stats", timeout=10) as resp:
            return json.load(resp)

    def release(self) -> None:
        """Answer the sync calls held by --hold-syncs, and hold no more."""
        req = urllib.request.Request(self.url + "/__mock__/release", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def outage(self, seconds: float) -> None:
        """Every call answers 503 for ``seconds`` from now (real seconds; 0 ends it)."""
        req = urllib.request.Request(f"{self.url}/__mock__/outage?seconds={seconds}", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def serve(self, campaigns: int) -> None:
        """Serve ``campaigns`` per client from now on (fewer: the rest were deleted at the source)."""
        req = urllib.request.Request(f"{self.url}/__mock__/campaigns?count={campaigns}", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def held(self) -> int:
        """Sync calls the simulator holds now (--hold-syncs)."""
        return self.stats()["held"]

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/__mock__/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()
