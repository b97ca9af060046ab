"""Real scrapyd nodes for the tests and the benchmarks: started with deploy/scrapyd/run-node on a loopback
address each (127.0.0.2, .3, ...), the project's egg deployed, stopped by PID at the end."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from harness.runner import DEMO_EMAIL, DEMO_PASSWORD, ROOT

USER, PASSWORD = "ops", "node-secret-1"
BIN = Path(sys.executable).parent


def build_egg(out: Path) -> Path:
    # scrapyd-deploy builds in the project directory (build/, *.egg-info): two test workers building
    # at once break each other's build, so they take turns.
    with open(Path(tempfile.gettempdir()) / "adcrawler-build-egg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([str(BIN / "scrapyd-deploy"), "--build-egg", str(out)], cwd=ROOT, check=True,
                       capture_output=True, timeout=120)
    return out


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class NodeProcess:
    url: str
    proc: subprocess.Popen
    home: Path

    def get(self, endpoint: str, **params: str) -> dict:
        return requests.get(f"{self.url}/{endpoint}.json", params=params, auth=(USER, PASSWORD), timeout=10).json()

    def jobs(self) -> dict:
        return self.get("listjobs", project="adcrawler")

    def deploy(self, egg: Path, version: str = "1") -> None:
        with egg.open("rb") as fh:
            answer = requests.post(f"{self.url}/addversion.json", auth=(USER, PASSWORD), timeout=60,
                                   data={"project": "adcrawler", "version": version}, files={"egg": fh}).json()
        assert answer["status"] == "ok", answer

    def kill(self) -> None:
        """SIGKILL the node's crawl processes, then the node: a machine lost mid-run."""
        for job in self.jobs()["running"]:
            os.kill(job["pid"], signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def node_env(api_url: str, database_url: str, workdir: Path, registry: Path, scale: float = 0.01,
             **extra: str) -> dict[str, str]:
    """The environment a node passes to its jobs: the simulator, the database, the registry."""
    env = {**os.environ, "ADCRAWLER_TIME_SCALE": repr(scale), "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": PASSWORD,
           "PATH": f"{BIN}:{os.environ['PATH']}", "AD_PLATFORM_API_URL": api_url,
           "AD_PLATFORM_EMAIL": DEMO_EMAIL, "AD_PLATFORM_PASSWORD": DEMO_PASSWORD, "DATABASE_URL": database_url,
           "ADCRAWLER_DATA_DIR": str(workdir),
           "ADCRAWLER_CLIENTS_FILE": str(registry), **extra}
    env.pop("PYTHONPATH", None)  # jobs must run from the deployed egg
    return env


def start_nodes(hosts: list[str], workdir: Path, env: dict[str, str], lazy: tuple[str, ...] = ()) -> list[NodeProcess]:
    """A scrapyd node per host; a ``lazy`` one accepts jobs and never starts them (its queue is
    polled once, at start: ~/.scrapyd.conf is read after the node's own file)."""
    nodes = []
    try:
        for host in hosts:
            home = workdir / f"node-{host}"
            home.mkdir(parents=True)
            port = free_port(host)
            node_env = env
            if host in lazy:
                (home / ".scrapyd.conf").write_text("[scrapyd]\npoll_interval = 86400\n")
                node_env = {**env, "HOME": str(home)}
            proc = subprocess.Popen([str(ROOT / "deploy/scrapyd/run-node"), "--port", str(port), "--bind", host],
                                    cwd=home, env=node_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            nodes.append(NodeProcess(f"http://{host}:{port}", proc, home))
        for node in nodes:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{node.url}/daemonstatus.json", auth=(USER, PASSWORD), timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert node.proc.poll() is None, f"scrapyd at {node.url} exited"
                assert time.monotonic() < deadline, f"scrapyd at {node.url} did not start"
                time.sleep(0.2)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def write_registry(path: Path, slugs: list[str], budget: dict[str, str] | None = None) -> Path:
    """A registry of ``slugs``, each its own client id, with the demo credentials."""
    lines = ["# made by the fleet tests"]
    for slug in slugs:
        lines += [f"[clients.{slug}]", f'client_id = "{slug}"']
        if budget and slug in budget:
            lines.append(f'budget = "{budget[slug]}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def dispatch_command(urls: list[str], clients: str, registry: Path, database_url: str, *args: str,
                     password: str = PASSWORD) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "SCRAPYD_USERNAME": USER, "SCRAPYD_PASSWORD": password, "DATABASE_URL": database_url,
           "ADCRAWLER_CLIENTS_FILE": str(registry)}
    return [sys.executable, "-m", "scrapy", "dispatch", "--nodes", ",".join(urls), *args, clients], env


def dispatch(urls: list[str], clients: str, registry: Path, database_url: str, *args: str,
             password: str = PASSWORD, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd, env = dispatch_command(urls, clients, registry, database_url, *args, password=password)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
