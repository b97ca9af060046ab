"""What an operator sees: the stats file, Prometheus metrics (pull and push), progress, JSON logs."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.parser import text_string_to_metric_families

from harness.runner import DEMO_PASSWORD, latest_stats, run_crawl, start_crawl
from tests.db import Db

SCALE = "0.01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_stats_file_matches_the_database_and_the_platform(mock_factory, tmp_path):
    db = Db(tmp_path)
    mock = mock_factory("--time-scale", SCALE, "--seed", "4", "--malformed", "2")
    result = run_crawl(mock.url, "demo", tmp_path)
    stats, platform = result.stats, mock.stats()["requests"]["demo"]
    stat = lambda name: result.stat(name, "demo")  # noqa: E731
    assert stat("requests_sent") == sum(platform["list"].values()) + sum(platform["sync"].values())
    assert stat("responses/sync_503") == platform["sync"].get("503", 0)
    assert stat("responses/sync_200") == platform["sync"]["200"] == 98
    assert stat("retries/DownloadTimeoutError") == platform["sync"].get("hang", 0) + platform["list"].get("hang", 0)
    assert stat("campaigns_stored") == db.scalar("SELECT COUNT(*) FROM campaigns") == 98
    assert stat("rows_inserted") == 98
    assert stat("records_rejected") == db.scalar("SELECT COUNT(*) FROM rejected_records") == 2
    assert stat("outcome") == "partial" and result.returncode == 1
    assert stat("lower_bound_seconds") > 0 and stat("elapsed_seconds") >= stat("lower_bound_seconds")
    stored = json.loads(db.scalar("SELECT stats FROM sync_runs"))
    assert stored["adcrawler/client/demo/requests_sent"] == stat("requests_sent")
    assert stored["adcrawler/run_id"] == stats["adcrawler/run_id"]


def test_metrics_endpoint_shows_progress_mid_run(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE)
    port = free_port()
    crawl = start_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_METRICS_PORT": str(port)})
    try:
        deadline = time.monotonic() + 30
        synced = 0.0
        while time.monotonic() < deadline and not 20 <= synced < 100:
            time.sleep(0.2)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            now = samples(text)
            synced = now.get(("adcrawler_campaigns_total", (("client", "demo"), ("result", "synced"))), 0)
        assert 20 <= synced < 100
        assert now["adcrawler_run_in_progress", (("client", "demo"),)] == 1
        assert now["adcrawler_campaigns_expected", (("client", "demo"),)] == 100
        assert DEMO_PASSWORD not in text
    finally:
        out, _ = crawl.communicate(timeout=120)
    assert crawl.returncode == 0, out[-2000:]


class Receiver(BaseHTTPRequestHandler):
    pushes: list[tuple[str, str, str]] = []

    def do_PUT(self):  # noqa: N802
        self._record()

    def do_POST(self):  # noqa: N802
        self._record()

    def _record(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Receiver.pushes.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_metrics_pushed_at_close_match_the_stats_file(mock_factory, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Receiver.pushes = []
    try:
        mock = mock_factory("--time-scale", SCALE, "--campaigns", "30", "--seed", "6")
        url = f"http://127.0.0.1:{server.server_port}"
        result = run_crawl(mock.url, "demo,globex", tmp_path, extra_env={"ADCRAWLER_PUSHGATEWAY_URL": url})
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.output[-2000:]
    by_path = {path: body for _, path, body in Receiver.pushes}
    assert set(by_path) == {"/metrics/job/adcrawler/client/demo", "/metrics/job/adcrawler/client/globex"}
    assert {method for method, _, _ in Receiver.pushes} == {"POST"}  # push-add keeps other metrics
    for client in ("demo", "globex"):
        pushed = samples(by_path[f"/metrics/job/adcrawler/client/{client}"])
        label = (("client", client),)
        assert pushed["adcrawler_requests_sent_total", label] == result.stat("requests_sent", client)
        assert pushed["adcrawler_campaigns_total", (("client", client), ("result", "synced"))] == 30
        assert pushed["adcrawler_run_duration_seconds", label] == result.stat("elapsed_seconds", client)
        assert pushed["adcrawler_run_outcome", (("client", client), ("outcome", "succeeded"))] == 1
        assert pushed["adcrawler_last_success_timestamp_seconds", label] > time.time() - 120
        assert pushed["adcrawler_run_in_progress", label] == 0
        assert all(c == client for name, labels in pushed for k, c in labels if k == "client")


def test_busy_metrics_port_is_a_warning_not_a_crash(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "5")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_METRICS_PORT": str(port)})
    assert result.returncode == 0
    assert "Metrics endpoint not started" in result.output


def test_json_logs_progress_and_no_secret_anywhere(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--campaigns", "40", "--seed", "12", "--token-lifetime", "200")
    port = free_port()
    crawl = start_crawl(mock.url, "demo", tmp_path, extra_env={
        "ADCRAWLER_LOG_JSON": "true", "ADCRAWLER_LOG_LEVEL": "DEBUG", "ADCRAWLER_PROGRESS_INTERVAL": "0.5",
        "ADCRAWLER_METRICS_PORT": str(port)})
    metrics_text = ""
    while crawl.poll() is None:
        try:
            metrics_text += urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            pass
        time.sleep(0.3)
    out, _ = crawl.communicate()
    assert crawl.returncode == 0, out[-2000:]
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{\"time\"")]
    assert lines and all({"time", "level", "logger", "message", "run_id"} <= set(x) for x in lines)
    progress = [x for x in lines if x["message"].startswith("Progress demo:")]
    assert progress and all(x["client"] == "demo" and "ETA" in x["message"] for x in progress)
    stats = json.dumps(latest_stats(tmp_path))
    for secret in [DEMO_PASSWORD, *mock.stats()["tokens"]]:
        assert secret not in out and secret not in stats and secret not in metrics_text
