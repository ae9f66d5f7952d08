"""The production stack as real processes on loopback, no Docker: what docker-compose.yml runs, minus containers.

A `dagster api grpc` code server, `dagster-webserver` and `dagster-daemon` share one PostgreSQL-backed
DAGSTER_HOME whose dagster.yaml is the repository's production one (QueuedRunCoordinator). `ingest_all` is
submitted through the GraphQL API, the daemon dequeues it and the code server runs it against a fresh PostgreSQL
warehouse reading the demo API. Then headless Chromium (Debian's `chromium`, driven by Playwright) opens the
asset page of `orders` and reads what an operator would: the latest materialization, its metadata and the
check results. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml

from etl_assets.demo_api import serve

from ..conftest import REPO, _create_db, _drop_db, free_port

BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("ETL_CHROMIUM", "/usr/bin/chromium")
EXPECTED_ROWS = {"orders": 199, "customers": 60, "events": 90, "releases": 12}
RUN_TIMEOUT = 150  # seconds for the queued run to be dequeued and finish; the job itself takes ~20 s here


def _pg_env(url: str) -> dict[str, str]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "DAGSTER_PG_HOST": info.get("host", "127.0.0.1"),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": info.get("user", "postgres"),
        "DAGSTER_PG_PASSWORD": info.get("password", ""),
        "DAGSTER_PG_DB": info["dbname"],
    }


def _instance_yaml() -> str:
    """The repository's production dagster.yaml, polling the queue every second instead of every five."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    return yaml.safe_dump(config, sort_keys=False)


class Stack:
    """Processes each in its own process group, so stopping one also stops the run workers it spawned."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env, self.procs = root, env, {}

    def start(self, name: str, *cmd: str) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.procs[name] = (
            subprocess.Popen(
                cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            ),
            log,
        )

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.root / f"{name}.log").read_bytes()[-tail:].decode(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{self.log(name)}" for name in self.procs)

    def assert_alive(self) -> None:
        for name, (proc, _log) in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            if ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"{what} not ready after {timeout:.0f} s\n{self.logs()}")

    def stop(self) -> None:
        for proc, _log in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:  # the group may still hold children (a run worker) after its leader exited
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            log.close()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)  # Dagster colours its console log


def _cli_ok(*cmd: str, env: dict[str, str]) -> bool:
    return subprocess.run(cmd, env=env, capture_output=True, timeout=60).returncode == 0


def _http_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.fixture(scope="module")
def stack(pg_server, tmp_path_factory):
    """The stack with `ingest_all` submitted through GraphQL and finished; yields what the tests look at."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    root = tmp_path_factory.mktemp("stack")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_instance_yaml(), encoding="utf-8")
    grpc_port, web_port = free_port(), free_port()
    (root / "workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": grpc_port, "location_name": "etl_assets"}}
                ]
            }
        ),
        encoding="utf-8",
    )

    storage_db, storage_url = _create_db(pg_server)
    warehouse_db, warehouse_url = _create_db(pg_server)
    api = serve("127.0.0.1", 0)
    env = {
        **os.environ,
        **_pg_env(storage_url),
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(REPO / "sources.yaml"),
        "ETL_WAREHOUSE_URL": warehouse_url,
        "ETL_DEMO_API_URL": f"http://127.0.0.1:{api.server_address[1]}",
        "PYTHONUNBUFFERED": "1",
    }
    stack = Stack(root, env)
    try:
        # Dagster's schema is created once, before three processes open the fresh database at the same time.
        migrate = subprocess.run(
            [str(BIN / "dagster"), "instance", "migrate"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]

        stack.start(
            "grpc",
            str(BIN / "dagster"),
            "api",
            "grpc",
            "-m",
            "etl_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(grpc_port),
        )
        # The same command the compose healthcheck runs.
        stack.wait(
            "code server",
            lambda: _cli_ok(
                str(BIN / "dagster"),
                "api",
                "grpc-health-check",
                "-h",
                "127.0.0.1",
                "-p",
                str(grpc_port),
                env=env,
            ),
            90,
        )
        stack.start(
            "webserver",
            str(BIN / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(web_port),
            "-w",
            str(root / "workspace.yaml"),
        )
        stack.start("daemon", str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml"))
        base = f"http://127.0.0.1:{web_port}"
        stack.wait("webserver /server_info", lambda: _http_json(f"{base}/server_info") is not None, 90)

        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        run_id = client.submit_job_execution(
            "ingest_all", repository_location_name="etl_assets", repository_name="__repository__"
        )
        final = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        stack.wait(f"run {run_id}", lambda: client.get_run_status(run_id) in final, RUN_TIMEOUT)
        yield {
            "base": base,
            "run_id": run_id,
            "status": client.get_run_status(run_id),
            "env": env,
            "storage_url": storage_url,
            "warehouse_url": warehouse_url,
            "stack": stack,
        }
    finally:
        stack.stop()
        api.shutdown()
        _drop_db(pg_server, storage_db)
        _drop_db(pg_server, warehouse_db)


def test_queued_run_is_dequeued_by_the_daemon_and_lands_every_source(stack):
    from dagster import DagsterEventType, DagsterRunStatus

    assert stack["status"] == DagsterRunStatus.SUCCESS, stack["stack"].logs()
    with psycopg.connect(
        stack["storage_url"]
    ) as conn:  # the run went through the queue, not straight to a worker
        events = [
            r[0]
            for r in conn.execute(
                "SELECT dagster_event_type FROM event_logs WHERE run_id = %s AND dagster_event_type IS NOT NULL "
                "ORDER BY id",
                (stack["run_id"],),
            )
        ]
    # Stored under the event types' values (RUN_START is 'PIPELINE_START' in the table).
    kinds = [DagsterEventType(e) for e in events]
    assert DagsterEventType.RUN_ENQUEUED in kinds, " ".join(sorted(set(events)))
    assert (
        kinds.index(DagsterEventType.RUN_ENQUEUED)
        < kinds.index(DagsterEventType.RUN_STARTING)
        < kinds.index(DagsterEventType.RUN_START)
    )
    assert "QueuedRunCoordinatorDaemon - INFO - Launched 1 runs" in _plain(
        stack["stack"].log("daemon", 10**6)
    )
    assert DagsterEventType.RUN_SUCCESS in kinds and DagsterEventType.RUN_FAILURE not in kinds
    # one per source, and one per orders file the run (no partition key) loaded, for its partition
    assert kinds.count(DagsterEventType.ASSET_MATERIALIZATION) == 4 + 2
    assert kinds.count(DagsterEventType.ASSET_CHECK_EVALUATION) == 16  # four checks per source
    with psycopg.connect(stack["warehouse_url"]) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in EXPECTED_ROWS}
    assert counts == EXPECTED_ROWS
    # What the compose healthcheck of the daemon runs: it passes once the daemons have heartbeated.
    assert _cli_ok(str(BIN / "dagster-daemon"), "liveness-check", env=stack["env"])


@pytest.fixture(scope="module")
def browser_tools():
    """Playwright's sync API, or a skip (a failure under ETL_REQUIRE_TOOLS=1) naming what is missing."""
    missing = []
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the Python package playwright (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if os.environ.get("ETL_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (ETL_REQUIRE_TOOLS=1)")
        pytest.skip(msg)
    return sync_playwright, PlaywrightTimeout


def open_browser(pw, profile: Path):
    """Headless Debian chromium; a persistent context is how Playwright takes a fresh --user-data-dir of ours."""
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    return pw.chromium.launch_persistent_context(
        str(profile),
        headless=True,
        executable_path=CHROMIUM,
        args=args,
        viewport={"width": 1600, "height": 1200},
    )


def test_asset_page_shows_latest_materialization_metadata_and_checks(browser_tools, stack, tmp_path):
    # browser_tools comes first: a missing browser skips before the stack is started for nothing.
    sync_playwright, PlaywrightTimeout = browser_tools
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = open_browser(pw, tmp_path / "chromium-profile")
        page = browser.new_page()
        try:
            page.set_default_timeout(30_000)
            page.goto(f"{stack['base']}/assets/orders")

            def dismiss_newsletter() -> None:  # the dialog a fresh browser profile gets over every page
                try:
                    page.get_by_role("button", name="Skip").click(timeout=3_000)
                except PlaywrightTimeout:
                    pass

            dismiss_newsletter()
            page.get_by_text("Latest materialization", exact=True).first.wait_for()
            # The latest materialization links to the run we launched through GraphQL.
            page.locator(f"a[href*='/runs/{stack['run_id']}']").first.wait_for()
            inserted = page.locator("tr", has=page.get_by_text("records_inserted", exact=True)).first
            inserted.wait_for()
            inserted_row = inserted.inner_text()
            row_count = page.locator("text=Row count").locator("xpath=..").inner_text()
            page.screenshot(path=str(ARTIFACTS / "asset-orders-overview.png"), full_page=True)

            page.goto(f"{stack['base']}/assets/orders?view=checks")
            dismiss_newsletter()
            checks = {}
            # Each check with a metadata key of its own: seeing it means the detail pane shows that check.
            for name, key in (
                ("schema_drift", "renamed"),
                ("primary_key_unique", "duplicate_keys_in_table"),
                ("required_not_null", "null_counts"),
            ):
                page.get_by_text(name, exact=True).filter(visible=True).first.click()
                page.get_by_text(key, exact=True).filter(visible=True).first.wait_for()
                page.get_by_text("Evaluation result", exact=True).first.wait_for()
                body = page.inner_text("body")
                checks[name] = body[body.index("Latest execution") :]
                page.screenshot(path=str(ARTIFACTS / f"asset-orders-check-{name}.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)  # what the browser saw
            raise
        finally:
            browser.close()
    assert inserted_row.split()[-1] == "199", inserted_row  # records_inserted of the one run: every good row
    assert "199" in row_count, row_count  # dagster/row_count
    for name, text in checks.items():
        assert "Passed" in text, f"{name}: {text[:500]}"
    assert "renamed" in checks["schema_drift"]  # the drift check's own metadata is shown
    shutil.copy(stack["stack"].root / "webserver.log", ARTIFACTS / "webserver.log")
