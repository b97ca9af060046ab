"""What an operator sees: the stats file, Prometheus metrics (pull, and push through a real
Pushgateway scraped by a real Prometheus), alerts, private files."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adcrawler.disk import append_spool
from adcrawler.extensions.metrics import METRICS
from harness.runner import DEMO_PASSWORD, ROOT, latest_stats, run_crawl, start_crawl
from tests.conftest import SCALE, free_port, last_line, wait_for
from tests.db import Db
from tests.test_store import item


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


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
    assert stat("campaigns_quarantined") == db.scalar("SELECT COUNT(*) FROM rejected_records") == 2
    assert stat("outcome") == "partial" and stat("outcome_reasons") == "2 quarantined" and result.returncode == 1
    assert stat("lower_bound_seconds") > 0 and stat("elapsed_seconds") >= stat("lower_bound_seconds")
    stored = json.loads(db.scalar("SELECT stats FROM sync_runs"))
    assert stored["adcrawler/client/demo/requests_sent"] == stat("requests_sent")
    assert stored["adcrawler/run_id"] == stats["adcrawler/run_id"]


# Held runs wait for the simulator's release: a sync timeout that cannot fire first.
HELD = {"ADCRAWLER_TIMEOUT_SYNC": "6000"}  # 60 s at time scale 0.01


def test_metrics_endpoint_shows_progress_mid_run(mock_factory, tmp_path):
    # Thirty syncs, then the simulator holds the run where it is until released.
    mock = mock_factory("--time-scale", SCALE, "--sync-hang-rate", "0", "--hold-syncs", "30")
    port = free_port()
    crawl = start_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_METRICS_PORT": str(port), **HELD})
    try:
        wait_for(mock.held, 60, "thirty syncs, then a held one")

        def synced_so_far():
            try:
                text = get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                return None
            now = samples(text)
            synced = now.get(("adcrawler_campaigns_total", (("client", "demo"), ("result", "synced"),
                                                            ("slug", "demo"))), 0)
            return (text, now, synced) if synced >= 20 else None

        text, now, synced = wait_for(synced_so_far, 30, "twenty syncs in the metrics")
        mock.release()
        assert 20 <= synced < 100
        assert now["adcrawler_run_in_progress", (("client", "demo"), ("slug", "demo"))] == 1
        assert now["adcrawler_campaigns_expected", (("client", "demo"), ("slug", "demo"))] == 100
        assert DEMO_PASSWORD not in text
    finally:
        out, _ = crawl.communicate(timeout=120)
    assert crawl.returncode == 0, out[-2000:]


def test_busy_metrics_port_is_a_warning_not_a_crash(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "5")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_METRICS_PORT": str(port)})
    assert result.returncode == 0
    assert "Metrics endpoint not started" in result.output


# -- a real Pushgateway, scraped by a real Prometheus -----------------------------------------

def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (make tools installs it)")
        pytest.skip(f"{name} is not installed (make tools installs it)")
    return path


@pytest.fixture
def prometheus(tmp_path):
    """A Pushgateway and a Prometheus scraping it every second with the project's alert rules."""
    gateway_port, prom_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    rules = tmp_path / "adcrawler-alerts.yml"
    shutil.copy(ROOT / "deploy/prometheus/adcrawler-alerts.yml", rules)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules}]\n"
        "scrape_configs:\n"
        "  - {job_name: pushgateway, honor_labels: true,\n"
        f"     static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]}}\n")
    procs = [
        subprocess.Popen([_binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{gateway_port}",
                          f"--persistence.file={tmp_path / 'gateway.data'}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    prom = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for(lambda: _up(f"{gateway}/-/ready") and _up(f"{prom}/-/ready"), 30, "the Pushgateway and Prometheus")
        yield gateway, prom
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def query(prom: str, expr: str) -> list:
    answer = json.loads(get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def firing(prom: str) -> set[tuple[str, str]]:
    alerts = json.loads(get(f"{prom}/api/v1/alerts"))["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"]["client"]) for a in alerts if a["state"] == "firing"}


def _deny_campaign_writes(pg_url: str, deny: bool = True) -> None:
    """What a REVOKE does to the crawler's role, for the superuser the tests run as (and its undoing)."""
    import psycopg2

    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        if deny:
            cur.execute("CREATE FUNCTION deny() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'permission denied "
                        "for table campaigns' USING ERRCODE = 'insufficient_privilege'; END $$ LANGUAGE plpgsql")
            cur.execute("CREATE TRIGGER deny BEFORE INSERT ON campaigns FOR EACH ROW EXECUTE FUNCTION deny()")
        else:
            cur.execute("DROP TRIGGER deny ON campaigns")
    conn.close()


@pytest.mark.postgres
def test_pushed_metrics_alerts_and_dashboard_through_prometheus(prometheus, mock_factory, pg_url, tmp_path):
    gateway, prom = prometheus
    mock = mock_factory("--time-scale", SCALE, "--seed", "6", "--campaigns", "60", "--sync-hang-rate", "0",
                        "--hold-syncs", "20")
    env = {"ADCRAWLER_PUSHGATEWAY_URL": gateway}
    # Run 1: a budget set twice too high (429s) and the database refusing writes mid-run (spooled rows).
    crawl = start_crawl(mock.url, "demo", tmp_path, database_url=pg_url,
                        extra_env={**env, **HELD, "ADCRAWLER_RATE_LIMIT": "20"})
    wait_for(mock.held, 60, "twenty syncs, then a held one")
    _deny_campaign_writes(pg_url)
    mock.release()
    out, _ = crawl.communicate(timeout=120)
    first = latest_stats(tmp_path)
    assert crawl.returncode == 1 and first["adcrawler/client/demo/rows_spooled"] > 0, out[-3000:]
    assert first["adcrawler/client/demo/responses_429"] > 0
    pushed = samples(get(f"{gateway}/metrics"))
    demo = (("client", "demo"), ("instance", ""), ("job", "adcrawler"), ("slug", "demo"))
    assert pushed["adcrawler_rate_limited_total", demo] == first["adcrawler/client/demo/responses_429"]
    assert pushed["adcrawler_run_outcome", tuple(sorted(demo + (("outcome", "partial"),)))] == 1
    assert pushed["adcrawler_last_success_timestamp_seconds", demo] == 0  # never succeeded yet
    expected = {("AdcrawlerRateLimited", "demo"), ("AdcrawlerRowsSpooled", "demo"), ("AdcrawlerRunIncomplete", "demo"),
                ("AdcrawlerClientStale", "demo")}
    assert wait_for(lambda: expected <= firing(prom), 30, "the alerts to fire")

    # Run 2: all well. The push replaces the group: zeros where run 1 had 429s and spooled rows.
    _deny_campaign_writes(pg_url, deny=False)
    second = run_crawl(mock.url, "demo", tmp_path, database_url=pg_url, extra_env=env)
    assert second.returncode == 0, second.output[-3000:]
    text = get(f"{gateway}/metrics")
    pushed = samples(text)
    assert pushed["adcrawler_rate_limited_total", demo] == 0
    assert pushed["adcrawler_rows_total", tuple(sorted(demo + (("operation", "spooled"),)))] == 0
    assert pushed["adcrawler_run_outcome", tuple(sorted(demo + (("outcome", "succeeded"),)))] == 1
    assert pushed["adcrawler_last_success_timestamp_seconds", demo] > time.time() - 120
    assert 'status="429"' not in text  # nothing of run 1 survives in the group
    for metric in METRICS:  # every documented series is there
        assert re.search(rf"^{metric.name}(_total)?\{{", text, re.M), metric.name
    assert wait_for(lambda: not firing(prom), 30, "the alerts to resolve")

    # Every dashboard panel's query returns data through Prometheus.
    dashboard = json.loads((ROOT / "deploy/grafana/adcrawler-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$client", ".*")
            if "run_in_progress" in expr:
                continue  # shows running syncs only: empty between runs, by design
            assert wait_for(lambda e=expr: query(prom, e), 15, f"data for {panel['title']!r}")
    assert DEMO_PASSWORD not in text


def test_a_skipped_client_pushes_nothing_over_the_running_one(prometheus, mock_factory, tmp_path):
    gateway, _ = prometheus
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "60", "--hold-syncs", "5")
    env = {"ADCRAWLER_PUSHGATEWAY_URL": gateway}
    first = start_crawl(mock.url, "demo", tmp_path, extra_env={**env, **HELD})
    try:
        wait_for(mock.held, 30, "the first run to sync, then be held")
        second = run_crawl(mock.url, "demo", tmp_path, extra_env=env)
        assert second.returncode == 0 and second.stat("outcome", "demo") == "skipped"
        pushed = samples(get(f"{gateway}/metrics"))
        demo = (("client", "demo"), ("instance", ""), ("job", "adcrawler"), ("slug", "demo"))
        # The demo group is the running run's progress, not the skipped run's word.
        assert first.poll() is None and pushed.get(("adcrawler_run_in_progress", demo), 1) == 1
        assert not [k for k, v in pushed.items() if k[0] == "adcrawler_run_outcome" and v == 1]
    finally:
        mock.release()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-2000:]
    pushed = samples(get(f"{gateway}/metrics"))
    assert pushed["adcrawler_run_outcome", (("client", "demo"), ("instance", ""), ("job", "adcrawler"),
                                            ("outcome", "succeeded"), ("slug", "demo"))] == 1


def test_alert_rules_pass_promtool():
    promtool = _binary("promtool")
    rules = ROOT / "deploy/prometheus"
    for args in (["check", "rules", "adcrawler-alerts.yml"], ["test", "rules", "adcrawler-alerts.test.yml"],
                 ["check", "config", "prometheus.yml"]):
        proc = subprocess.run([promtool, *args], cwd=rules, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# -- files ---------------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_files_the_crawler_creates_are_private(mock_factory, tmp_path):
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "40", "--hold-syncs", "5")
    work = tmp_path / "work"
    crawl = start_crawl(mock.url, "demo", work, settings={"JOBDIR": str(work / "job")}, extra_env=HELD)
    try:  # SQLite's own files exist while the database is open: the simulator holds the run open
        wait_for(mock.held, 30, "the run to be held")
        wal = wait_for(lambda: next(work.glob("adcrawler.sqlite3-wal"), None), 30, "the SQLite WAL file")
        assert _mode(wal) == 0o600
    finally:
        mock.release()
        out, _ = crawl.communicate(timeout=120)
    assert crawl.returncode == 0, out[-2000:]
    files = [work / "adcrawler.sqlite3", *(work / "stats").iterdir(), *(work / "job").iterdir(),
             *(work / "adcrawler.sqlite3.locks").iterdir()]
    assert len(files) == 5
    assert {str(f.relative_to(work)): oct(_mode(f)) for f in files} == {
        str(f.relative_to(work)): "0o600" for f in files}
    for directory in (work / "stats", work / "job", work / "adcrawler.sqlite3.locks"):
        assert _mode(directory) == 0o700, directory
    [spool] = append_spool(tmp_path / "new" / "spool", "run1", [item(1)])
    assert _mode(spool) == 0o600 and _mode(spool.parent) == 0o700 and _mode(spool.parent.parent) == 0o700


def test_a_running_job_pushes_its_progress_and_a_killed_one_raises_an_alert(prometheus, mock_factory, tmp_path):
    gateway, prom = prometheus
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "60", "--hold-syncs", "20")
    env = {"ADCRAWLER_PUSHGATEWAY_URL": gateway, **HELD}  # a push every second (30 s at 0.01, at least 1 s)
    crawl = start_crawl(mock.url, "demo,acme", tmp_path, extra_env=env)
    try:
        wait_for(lambda: mock.held() >= 2, 60, "both clients' runs to be held mid-sync")
        demo = (("client", "demo"), ("instance", ""), ("job", "adcrawler"), ("slug", "demo"))

        def progress():
            pushed = samples(get(f"{gateway}/metrics"))
            return pushed if pushed.get(("adcrawler_campaigns_total", tuple(sorted(
                demo + (("result", "synced"),))))) == 20 else None

        pushed = wait_for(progress, 30, "the progress of twenty syncs on the Pushgateway")
        assert pushed["adcrawler_run_in_progress", demo] == 1
        assert pushed["adcrawler_push_interval_seconds", demo] == 1.0
        assert ("adcrawler_run_in_progress", (("client", "acme-corp"), ("instance", ""), ("job", "adcrawler"),
                                              ("slug", "acme"))) \
            in pushed
        crawl.kill()  # the job dies mid-run: its pushes stop with "in progress"
        crawl.wait(timeout=30)
        assert wait_for(lambda: {("AdcrawlerMetricsStopped", "demo"), ("AdcrawlerMetricsStopped", "acme-corp")}
                        <= firing(prom), 30, "the alert for metrics that stopped")
    finally:
        mock.release()
        if crawl.poll() is None:
            crawl.kill()
        crawl.communicate(timeout=30)


def test_pushes_to_a_pushgateway_that_never_answers_end_within_the_deadline(mock_factory, tmp_path):
    """Thirty clients, eight pushes at a time, each waiting 2 s on a gateway that accepts and never
    answers: the pushes at the end stop at their 5 s deadline, every client counted and named."""
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "3")
    clients = [f"hole{i:02d}" for i in range(30)]
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # connections complete in the backlog; nothing ever reads them
        began = time.monotonic()
        result = run_crawl(mock.url, ",".join(clients), tmp_path,
                           extra_env={"ADCRAWLER_PUSHGATEWAY_URL": f"http://127.0.0.1:{hole.getsockname()[1]}"})
        took = time.monotonic() - began
    assert result.returncode == 1
    assert all(result.stat("metrics_push_failed", c) == 1 and result.stat("outcome", c) == "succeeded"
               for c in clients)
    # Two rounds of eight time out in 4 s; of the rest, none is done by the deadline.
    assert result.output.count("not done within the deadline") >= 10
    assert took < 60  # not a timeout per client (30 x 2 s), on a loaded machine too
    assert last_line(result).endswith("and 25 more were not pushed")


def test_the_stale_alert_stays_quiet_through_a_run_of_a_client_that_succeeded_lately(prometheus, mock_factory,
                                                                                       tmp_path):
    """Progress pushes carry the last success read from the database at the start: demo, which
    succeeded a moment ago, is not stale mid-run; acme, which never did, is."""
    gateway, prom = prometheus
    env = {"ADCRAWLER_PUSHGATEWAY_URL": gateway, "ADCRAWLER_SYNC_MAX_AGE": "3600"}
    quiet = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "20")
    first = run_crawl(quiet.url, "demo", tmp_path, extra_env=env)
    assert first.returncode == 0, first.output[-2000:]
    succeeded = time.time()
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "60", "--hold-syncs", "20")
    crawl = start_crawl(mock.url, "demo,acme", tmp_path, extra_env={**env, **HELD})
    try:
        wait_for(lambda: mock.held() >= 2, 60, "both clients' runs to be held mid-sync")
        demo = (("client", "demo"), ("instance", ""), ("job", "adcrawler"), ("slug", "demo"))
        pushed = wait_for(lambda: (p := samples(get(f"{gateway}/metrics"))).get(("adcrawler_run_in_progress", demo))
                          == 1 and p, 30, "a progress push of the second run")
        assert succeeded - 60 < pushed["adcrawler_last_success_timestamp_seconds", demo] <= succeeded
        # Prometheus scrapes and evaluates every second: acme's alert fires, demo's never does.
        seen: set[tuple[str, str]] = set()

        def acme_stale() -> bool:
            seen.update(firing(prom))
            return ("AdcrawlerClientStale", "acme-corp") in seen

        assert wait_for(acme_stale, 30, "acme's stale alert")
        for _ in range(6):  # and a few evaluations more
            seen.update(firing(prom))
            time.sleep(0.5)
        assert crawl.poll() is None  # all this while, the run was going
        assert ("AdcrawlerClientStale", "demo") not in seen, seen
    finally:
        mock.release()
        out, _ = crawl.communicate(timeout=120)
    assert crawl.returncode == 0, out[-2000:]
    assert ("AdcrawlerClientStale", "demo") not in firing(prom)


def test_a_crawl_that_cannot_reach_its_database_pushes_a_failed_outcome_for_every_client(prometheus, mock_factory,
                                                                                          tmp_path):
    gateway, prom = prometheus
    env = {"ADCRAWLER_PUSHGATEWAY_URL": gateway, "ADCRAWLER_SYNC_MAX_AGE": "3600"}
    mock = mock_factory("--time-scale", SCALE, "--quiet", "--campaigns", "20")
    first = run_crawl(mock.url, "demo", tmp_path, extra_env=env)
    assert first.returncode == 0, first.output[-2000:]
    last = samples(get(f"{gateway}/metrics"))["adcrawler_last_success_timestamp_seconds", (
        ("client", "demo"), ("instance", ""), ("job", "adcrawler"), ("slug", "demo"))]
    down = run_crawl(mock.url, "demo,acme", tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                     extra_env=env)
    assert down.returncode == 1
    assert "demo: failed (the database could not be opened (cannot connect to PostgreSQL" in last_line(down)
    pushed = samples(get(f"{gateway}/metrics"))
    for client, slug in (("demo", "demo"), ("acme-corp", "acme")):
        labels = (("client", client), ("instance", ""), ("job", "adcrawler"), ("slug", slug))
        assert pushed["adcrawler_run_outcome", tuple(sorted(labels + (("outcome", "failed"),)))] == 1, client
        assert pushed["adcrawler_run_outcome", tuple(sorted(labels + (("outcome", "succeeded"),)))] == 0, client
        assert pushed["adcrawler_run_in_progress", labels] == 0
    # What the run could not read is left as it was: demo's last success, acme's none.
    assert pushed["adcrawler_last_success_timestamp_seconds", (("client", "demo"), ("instance", ""),
                                                               ("job", "adcrawler"), ("slug", "demo"))] == last
    assert ("adcrawler_last_success_timestamp_seconds", (("client", "acme-corp"), ("instance", ""),
                                                         ("job", "adcrawler"), ("slug", "acme"))) not in pushed
    assert wait_for(lambda: {("AdcrawlerRunIncomplete", "demo"), ("AdcrawlerRunIncomplete", "acme-corp")}
                    <= firing(prom), 30, "the incomplete-run alerts")
    assert ("AdcrawlerClientStale", "demo") not in firing(prom)
