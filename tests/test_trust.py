"""Secrets stay with the platform, nothing hangs, and no run claims what it did not earn."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.runner import DEMO_EMAIL, DEMO_PASSWORD, ROOT, run_crawl, start_crawl
from tests.conftest import QUIET, free_port, last_line, read_until, wait_for

# -- credentials are bound to the platform's origin ------------------------------------


class RecordingHost:
    """Another host (127.0.0.2): records every request it receives and answers
    like the platform would, token included, so that a crawler that followed a
    redirect there would go on as if nothing happened."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str]]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                host.received.append((self.command, self.path, dict(self.headers)))
                if self.path.startswith("/auth/token"):
                    body = {"access_token": "stolen-token", "token_type": "Bearer", "expires_in": 3600}
                elif self.path.startswith("/api/campaigns?"):
                    body = {"data": [], "pagination": {"page": 1, "limit": 100, "total": 0, "has_more": False}}
                else:
                    body = {"success": True, "campaign_id": self.path.split("/")[3],
                            "synced_at": "2026-01-01T00:00:00Z"}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RecordingHost":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["auth", "list", "sync"])
def test_a_redirect_to_another_origin_never_receives_a_credential(mock_factory, tmp_path, endpoint, status):
    with RecordingHost() as other:
        mock = mock_factory(*QUIET, "--campaigns", "5", "--redirect-endpoint", endpoint,
                            "--redirect-status", str(status), "--redirect-to", other.url)
        result = run_crawl(mock.url, "demo", tmp_path)
        tokens = mock.stats()["tokens"]
    secrets = [DEMO_PASSWORD, DEMO_EMAIL, "Basic ", "Bearer ", *tokens]
    leaked = [(path, h) for _, path, h in other.received for v in h.values() for s in secrets if s in v]
    assert leaked == []
    assert other.received == []  # not followed at all: the request is refused before it is sent
    assert result.returncode == 1
    assert result.stat("outcome", "demo") == "failed"
    assert "redirected to another origin (http://127.0.0.2:" in last_line(result)
    assert result.stat("redirects_refused", "demo") >= 1
    assert "stolen-token" not in result.output


@pytest.mark.parametrize("endpoint, status", [("auth", 307), ("auth", 308), ("list", 301), ("list", 302),
                                              ("list", 303), ("list", 307), ("sync", 307), ("sync", 308)])
def test_a_redirect_within_the_platform_is_followed(mock_factory, tmp_path, endpoint, status):
    mock = mock_factory(*QUIET, "--campaigns", "5", "--redirect-endpoint", endpoint,
                        "--redirect-status", str(status), "--redirect-to", "self")
    result = run_crawl(mock.url, "demo", tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    assert mock.stats()["syncs"]["demo"] == {f"campaign_{n}": 1 for n in range(1, 6)}
    assert result.stat("redirects_refused", "demo") == 0


# -- a lock is a lease -------------------------------------------------------------------

# Held runs wait for the simulator's release: a sync timeout that cannot fire first.
HELD = {"ADCRAWLER_TIMEOUT_SYNC": "6000"}  # 60 s at time scale 0.01


def _runs(db) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scrapy", "runs", "demo"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "DATABASE_URL": db.url})


def _lose_lock(db) -> str:
    """Another run takes the client: on PostgreSQL its lease, as if ours had expired; for SQLite,
    the lock file replaced under the run. What the run then says."""
    if db.kind == "postgresql":
        assert db.rows("UPDATE client_leases SET run_id = 'another', expires_at = now() + interval '1 hour' "
                       "RETURNING client_id") == [("demo",)]
        return "its lease was taken by another run"
    [lock] = (db.workdir / "adcrawler.sqlite3.locks").glob("*.lock")
    lock.unlink()
    return "its lock file was replaced"


def test_a_lost_lock_interrupts_its_run_and_only_one_run_succeeds(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "60", "--hold-syncs", "10")
    env = HELD  # the locks are checked every 0.05 s at time scale 0.01
    first = start_crawl(mock.url, "demo", db.workdir, database_url=db.url, extra_env=env)
    try:
        wait_for(mock.held, 30, "the first run to be held after ten syncs")
        if db.kind == "postgresql":  # the operator sees who holds the client, until when
            runs = _runs(db)
            assert re.search(r" running .* lease held by pid \d+ on \S+ until \d\d:\d\d:\d\d$",
                             runs.stdout.splitlines()[1]), runs.stdout + runs.stderr
        why = _lose_lock(db)
        early = read_until(first, why, 30)
        mock.release()  # the first run's syncs in flight are answered; it sends no more
        if db.kind == "postgresql":  # the other run is done with it
            db.rows("DELETE FROM client_leases RETURNING client_id")
        second = run_crawl(mock.url, "demo", db.workdir, database_url=db.url)
    finally:
        mock.release()
        out, _ = first.communicate(timeout=120)
    out = early + out
    assert first.returncode == 1, out[-3000:]
    assert f"demo: interrupted ({why}" in out.splitlines()[-1]
    if db.kind == "postgresql":
        assert " interrupted " in _runs(db).stdout.splitlines()[2]
    assert second.returncode == 0, second.output[-3000:]
    syncs = mock.stats()["syncs"]["demo"]
    assert set(syncs) == {f"campaign_{n}" for n in range(1, 61)}  # the second run synced every campaign
    # The first run synced ten, then only what it had in flight (one budget): nothing after it knew.
    assert sum(syncs.values()) - 60 <= 10 + 10
    assert sorted(r[0] for r in db.rows("SELECT outcome FROM sync_runs")) == ["interrupted", "succeeded"]


# -- a job directory belongs to one live process ---------------------------------------------

def test_a_second_start_on_a_live_job_directory_is_refused_and_changes_nothing(mock_factory, tmp_path):
    mock = mock_factory(*QUIET, "--campaigns", "30", "--hold-syncs", "5")
    jobdir = tmp_path / "job"
    first = start_crawl(mock.url, "demo", tmp_path, settings={"JOBDIR": str(jobdir)}, extra_env=HELD)
    try:
        wait_for(mock.held, 30, "the first run to be held")
        before = (jobdir / "adcrawler-run.json").read_text()
        second = run_crawl(mock.url, "demo", tmp_path, settings={"JOBDIR": str(jobdir)})
        assert second.returncode == 2
        assert second.output.strip().splitlines() == [
            f"adcrawler: JOBDIR {jobdir} is in use by another crawl that is still running; "
            "give each crawl its own job directory"]
        assert (jobdir / "adcrawler-run.json").read_text() == before
        # A process that holds no client (the first holds demo) leaves its own job directory alone.
        other = tmp_path / "other-job"
        third = run_crawl(mock.url, "demo", tmp_path, settings={"JOBDIR": str(other)})
        assert third.returncode == 0 and third.stat("outcome", "demo") == "skipped"
        assert list(other.iterdir()) == []
    finally:
        mock.release()
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-3000:]
    assert json.loads((jobdir / "adcrawler-run.json").read_text())["state"] == "finished"


# -- every wait is bounded -----------------------------------------------------------------

def _lock_campaigns(db):
    """Another session takes the campaigns table (SQLite: the whole database) and keeps it."""
    if db.kind == "postgresql":
        import psycopg2

        conn = psycopg2.connect(db.url)
        conn.cursor().execute("LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE")
    else:
        import sqlite3

        conn = sqlite3.connect(db.workdir / "adcrawler.sqlite3", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_a_locked_table_is_a_bounded_fault_and_sigterm_ends_the_run_at_once(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "30", "--hold-syncs", "5")
    env = HELD
    crawl = start_crawl(mock.url, "demo", db.workdir, database_url=db.url, extra_env=env)
    blocker = None
    try:
        wait_for(mock.held, 30, "the run to be held")
        blocker = _lock_campaigns(db)
        mock.release()
        early = read_until(crawl, "Database write failed", 30)  # a lock wait that ended (1 s here): retried
        crawl.send_signal(signal.SIGTERM)
        began = time.monotonic()
        out, _ = crawl.communicate(timeout=60)
        stopped_in = time.monotonic() - began
    finally:
        mock.release()
        if crawl.poll() is None:
            crawl.kill()
        if blocker is not None:
            blocker.close()
    out = early + out
    assert crawl.returncode == 1 and "Traceback" not in out, out[-3000:]
    # No more tries once stopping: one lock wait per write left (a second each; bounded for a loaded machine).
    assert stopped_in < 15, out[-3000:]
    assert "rows waiting in the spool (lock timeout)" in out.splitlines()[-1]  # the cause, named
    spooled = sum(len(f.read_text().splitlines()) for f in (db.workdir / "spool").glob("*.jsonl"))
    stored = db.scalar("SELECT COUNT(*) FROM campaigns")
    assert spooled > 0 and stored + spooled >= 5  # every synced campaign written or kept on disk


# -- the outcome is the truth ----------------------------------------------------------------

def _refuse_run_completion(db):
    from adcrawler.store import open_store

    open_store(db.url, str(db.workdir)).migrate()
    if db.kind == "postgresql":
        import psycopg2

        conn = psycopg2.connect(db.url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'sync_runs is read-only'; END $$ LANGUAGE plpgsql")
            cur.execute("CREATE TRIGGER refuse BEFORE UPDATE ON sync_runs FOR EACH ROW EXECUTE FUNCTION refuse()")
        conn.close()
    else:
        import sqlite3

        conn = sqlite3.connect(db.workdir / "adcrawler.sqlite3")
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON sync_runs BEGIN "
                     "SELECT RAISE(ABORT, 'sync_runs is read-only'); END")
        conn.commit()
        conn.close()


def test_a_run_that_cannot_record_itself_does_not_claim_success(mock_factory, db):
    mock = mock_factory(*QUIET, "--campaigns", "10")
    _refuse_run_completion(db)
    result = run_crawl(mock.url, "demo", db.workdir, database_url=db.url)
    assert result.returncode == 1
    assert "Traceback" not in result.output
    assert last_line(result).endswith("demo: partial (the run record could not be written)")
    assert db.scalar("SELECT COUNT(*) FROM campaign_metrics WHERE run_id = ''") == 0
    assert db.scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 10  # the work is kept


def test_a_metrics_push_that_fails_is_named_and_the_exit_status_says_so(mock_factory, tmp_path):
    mock = mock_factory(*QUIET, "--campaigns", "10")
    gateway = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_PUSHGATEWAY_URL": gateway})
    assert result.returncode == 1
    assert result.stat("outcome", "demo") == "succeeded"  # the sync's own outcome stands
    assert last_line(result).endswith("Sync complete: 1 client(s) succeeded; but the metrics of demo were not pushed")
    assert result.stat("metrics_push_failed", "demo") == 1


# -- database faults are not bad rows ----------------------------------------------------------

def _deny_campaign_writes(pg_url: str) -> None:
    """What a REVOKE does to a non-superuser, for the superuser the tests run as."""
    import psycopg2

    from adcrawler.store import open_store

    open_store(pg_url, "").migrate()
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE FUNCTION deny() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'permission denied "
                    "for table campaigns' USING ERRCODE = 'insufficient_privilege'; END $$ LANGUAGE plpgsql")
        cur.execute("CREATE TRIGGER deny BEFORE INSERT ON campaigns FOR EACH ROW EXECUTE FUNCTION deny()")
    conn.close()


FAST_DB_RETRY: dict[str, str] = {}  # the retries' backoffs at time scale 0.01: milliseconds


@pytest.mark.postgres
def test_permission_denied_is_a_fault_that_spools_not_a_quarantine(mock_factory, pg_url, tmp_path):
    from tests.db import Db

    db = Db(tmp_path, pg_url)
    _deny_campaign_writes(pg_url)
    mock = mock_factory(*QUIET, "--campaigns", "20")
    result = run_crawl(mock.url, "demo", tmp_path, database_url=pg_url, extra_env=FAST_DB_RETRY)
    assert result.returncode == 1 and "Traceback" not in result.output
    assert db.scalar("SELECT COUNT(*) FROM rejected_records") == 0  # nothing blamed on the rows
    assert result.stat("rows_spooled", "demo") == 20 and result.stat("db_retries") >= 1
    assert "20 rows waiting in the spool (permission)" in last_line(result)


@pytest.mark.postgres
def test_with_the_database_and_the_spool_both_failing_the_run_stops_fetching_and_says_so(mock_factory, pg_url,
                                                                                         tmp_path):
    _deny_campaign_writes(pg_url)
    spool = tmp_path / "data" / "spool"
    spool.parent.mkdir()
    spool.write_text("")  # the spool cannot be a directory
    mock = mock_factory(*QUIET, "--campaigns", "100")
    result = run_crawl(mock.url, "demo", tmp_path, database_url=pg_url,
                       extra_env={**FAST_DB_RETRY, "ADCRAWLER_DATA_DIR": str(spool.parent)})
    assert result.returncode == 1
    assert "Traceback" not in result.output and "never retrieved" not in result.output
    assert re.search(r"demo: interrupted \(the database and the spool are both unavailable, "
                     r"\d+ records could be neither written nor spooled\)$", last_line(result)), last_line(result)
    # It stopped fetching: the syncs of a batch or two, and those in flight, not a hundred.
    assert sum(mock.stats()["syncs"]["demo"].values()) <= 40


# -- configuration ---------------------------------------------------------------------

def _crawl_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scrapy", "crawl", "campaigns", *args], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name, value, secret", [
    ("DATABASE_URL", "postgresql://user:pw-s3cret@[::1:5432/x", "pw-s3cret"),
    ("DATABASE_URL", "postgresql://user:pw-s3cret@host:99999/x", "pw-s3cret"),
    ("AD_PLATFORM_API_URL", "http://a b", None),
    ("AD_PLATFORM_API_URL", "http://127.0.0.1:3001?x=1", None),
])
def test_a_malformed_url_is_one_line_and_exit_2_without_its_secret(name, value, secret):
    proc = _crawl_cli("-a", "client=demo", env={name: value})
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert name in line and "Traceback" not in proc.stderr
    if secret:
        assert secret not in proc.stderr


def test_a_slug_not_in_the_registry_and_an_unknown_argument_are_errors():
    proc = _crawl_cli("-a", "client=nosuch")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("adcrawler: client 'nosuch' is not in the registry adcrawler/clients.toml "
                                   "(known: acme (acme-corp), demo, globex); add it there, or name another registry "
                                   "with ADCRAWLER_CLIENTS_FILE")
    proc = _crawl_cli("-a", "client=demo", "-a", "bogus=1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("adcrawler: unknown spider argument(s) bogus: campaigns takes "
                                   "-a client=<name>, -a client=a,b or -a client=all, -a dry_run=1 and "
                                   "-a confirm_removals=1")


# -- what the platform sends never writes a log line of its own ----------------------------

@pytest.mark.parametrize("as_json", [False, True])
def test_field_names_cannot_forge_log_lines_or_send_terminal_escapes(mock_factory, tmp_path, as_json):
    mock = mock_factory(*QUIET, "--campaigns", "6", "--forged-keys", "2")
    result = run_crawl(mock.url, "demo", tmp_path, extra_env={"ADCRAWLER_LOG_JSON": str(as_json).lower()})
    assert result.returncode == 1  # two records quarantined: partial
    lines = result.output.splitlines()
    assert not any(ch in result.output for ch in "\x1b\x07\r\u2028\u202e")
    # The fake line is not a line of its own: nothing but the crawl's last line starts like one.
    assert not [line for line in lines if re.match(r'(\d{4}-\d\d-\d\d \S+ \[[\w.]+\] \w+: |.*"message": ")'
                                                  r'Sync complete', line)]
    if as_json:
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        quarantined = [r["message"] for r in records if "quarantined a record" in r["message"]]
    else:
        quarantined = [line for line in lines if "quarantined a record" in line]
    assert len(quarantined) == 2
    assert all("\\n2026-01-01" in q or "\\x1b]0;owned" in q for q in quarantined), quarantined
    assert "Sync incomplete: demo: partial (2 quarantined)" in lines[-1]


# -- a role that may read and write rows, and nothing more ------------------------------------

@pytest.fixture
def dml_role(pg_url):
    """A login role with what DBAs usually give an application: CONNECT, and SELECT, INSERT,
    UPDATE and DELETE on the tables (those there now, and those its owner creates later)."""
    import uuid

    import psycopg2

    role = f"adcrawler_app_{uuid.uuid4().hex[:8]}"
    dbname = pg_url.rsplit("/", 1)[1]
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"')
        cur.execute('REVOKE CREATE ON SCHEMA public FROM PUBLIC')
        cur.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        cur.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                    f'TO "{role}"')
        cur.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO "{role}"')
    conn.close()
    yield role, pg_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    conn = psycopg2.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    conn.close()


@pytest.mark.postgres
def test_a_role_that_may_not_create_crawls_a_current_schema_and_names_what_it_lacks_on_an_old_one(
        mock_factory, dml_role, pg_url, tmp_path):
    from tests.db import Db

    role, app_url = dml_role
    mock = mock_factory(*QUIET, "--campaigns", "10")
    behind = run_crawl(mock.url, "demo", tmp_path, database_url=app_url)
    assert behind.returncode == 2 and "Traceback" not in behind.output, behind.output[-3000:]
    errors = [line for line in behind.output.splitlines() if "ERROR" in line]
    [line] = [line for line in errors if "migrate" in line and "[adcrawler.crawl]" not in line] or [errors]
    assert "schema is at version 0" in line and "scrapy migrate" in line and "permission denied" in line
    assert "demo: failed (the database could not be opened (" in last_line(behind)  # and pushed so
    assert mock.stats()["requests"] == {}  # nothing sent for a run that cannot store

    migrate = subprocess.run([sys.executable, "-m", "scrapy", "migrate"], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "DATABASE_URL": pg_url}, timeout=60)  # the owner's step
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    current = run_crawl(mock.url, "demo", tmp_path, database_url=app_url)
    assert current.returncode == 0 and "Traceback" not in current.output, current.output[-3000:]
    assert Db(tmp_path, pg_url).scalar("SELECT COUNT(*) FROM campaigns WHERE sync_status = 'synced'") == 10
