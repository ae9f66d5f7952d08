"""The Dagster UI tells the whole story, on both instance kinds: headless Chromium reads what an operator would.

One `dagster-webserver` per instance kind (the embedded default: exactly deploy/dagster.local.yaml, SQLite
storage; PostgreSQL: the production dagster.yaml) over a drop folder of four `orders` files: a good one, one with
`quantity` renamed `qty`, one that drift blocks (no required column) and one renamed with a ragged row. The runs
are made as a user makes them: `make run`'s launcher for ingest_orders without a partition (it lands the first two
files, then drift blocks the third and the run fails), then the fourth file's partition by `dagster job execute`
(the rename and the quarantined row), then that partition again (a no-op). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, _create_db, _drop_db, free_port
from .test_stack_e2e import ARTIFACTS, BIN, Stack, _http_json, _pg_env, browser_tools, open_browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
__all__ = ["browser_tools"]  # the fixture, shared with test_stack_e2e.py

HEADER = "order_id,customer_id,product,quantity,unit_price,ordered_at,status\n"
GOOD, RENAMED, BAD, LAST = (f"orders_2026-11-{d}.csv" for d in (27, 28, 29, 30))


def _rows(first: int, n: int, day: int) -> str:
    return "".join(
        f"{i},{i % 20},gizmo,{i % 9 + 1},{i % 50}.99,2026-11-{day}T08:{i % 60:02d}:00+00:00,new\n"
        for i in range(first, first + n)
    )


def _drop_folder(drop: Path) -> None:
    drop.mkdir()
    (drop / GOOD).write_text(HEADER + _rows(1001, 20, 27), encoding="utf-8")
    (drop / RENAMED).write_text(HEADER.replace("quantity", "qty") + _rows(1021, 10, 28), encoding="utf-8")
    (drop / BAD).write_text("customer,note\nx,a file of another export\n", encoding="utf-8")
    ragged = "1041,3,gizmo,2,9.99,2026-11-30T09:00:00+00:00,new,EXTRA\n"  # 8 fields: quarantined
    (drop / LAST).write_text(
        HEADER.replace("quantity", "qty") + _rows(1031, 10, 30) + ragged, encoding="utf-8"
    )


def _sources(root: Path) -> Path:
    """The shipped `orders` (declared columns) reading the test's drop folder."""
    spec = yaml.safe_load((REPO / "sources.yaml").read_text(encoding="utf-8"))["orders"]
    spec["path"] = str(root / "drop" / "orders_*.csv")
    path = root / "sources.yaml"
    path.write_text(yaml.safe_dump({"orders": spec}, sort_keys=False), encoding="utf-8")
    return path


def _run(env: dict[str, str], *cmd: str, ok: bool = True) -> None:
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert (out.returncode == 0) == ok, (
        f"{cmd}: rc {out.returncode}\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    )


def _partition_run(env: dict[str, str], key: str) -> None:
    tags = json.dumps({"dagster/partition": key})
    _run(env, str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_orders",
         "--tags", tags)  # fmt: skip


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def ui(request, tmp_path_factory):
    """The instance after the first two runs, with its webserver up; yields what the tests use."""
    kind = request.param
    root = tmp_path_factory.mktemp(f"ui-{kind}")
    home = root / "dagster_home"
    home.mkdir()
    _drop_folder(root / "drop")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(_sources(root)),
        "PYTHONUNBUFFERED": "1",
    }
    dbs: list[str] = []
    if kind == "embedded":  # exactly the file `make run` and `make dev` copy into DAGSTER_HOME
        shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        env["ETL_WAREHOUSE_URL"] = f"sqlite:///{root / 'warehouse.db'}"
    else:
        pg_server = request.getfixturevalue("pg_server")
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        storage_db, storage_url = _create_db(pg_server)
        warehouse_db, env["ETL_WAREHOUSE_URL"] = _create_db(pg_server)
        dbs = [storage_db, warehouse_db]
        env.update(_pg_env(storage_url))
    stack = Stack(root, env)
    started = time.monotonic()
    try:
        # make run's route, without a partition: the good files land, the blocked one fails the run
        _run(env, sys.executable, "-m", "etl_assets.defs.launch", "ingest_orders", "-w", str(REPO / "workspace.yaml"),
             ok=False)  # fmt: skip
        _partition_run(env, LAST)  # the rename and the quarantined row
        port = free_port()
        stack.start(
            "webserver", str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w",
            str(REPO / "workspace.yaml"),
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        stack.wait("webserver /server_info", lambda: _http_json(f"{base}/server_info") is not None, 90)
        yield {
            "kind": kind,
            "base": base,
            "env": env,
            "stack": stack,
            "setup_seconds": time.monotonic() - started,
        }
    finally:
        stack.stop()
        if dbs:
            for name in dbs:
                _drop_db(request.getfixturevalue("pg_server"), name)


def _shot(page, ui, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"ui-{ui['kind']}-{name}.png"), full_page=True)


def test_partitions_checks_and_columns_tell_the_story(browser_tools, ui, tmp_path):
    sync_playwright, _timeout = browser_tools
    ARTIFACTS.mkdir(exist_ok=True)
    base = ui["base"]
    seen: dict[str, str] = {}
    with sync_playwright() as pw:
        browser = open_browser(pw, tmp_path / "chromium-profile")
        page = browser.new_page()
        page.set_default_timeout(60_000)  # the first page waits for the code location to load

        # The dialog a fresh browser profile gets, whenever it shows up: skipped before any action.
        skip = page.get_by_role("button", name="Skip")
        page.add_locator_handler(skip, lambda: skip.click())

        def visit(path: str) -> None:
            page.goto(f"{base}{path}")

        def body_from(marker: str) -> str:
            body = page.inner_text("body")
            return body[body.index(marker) :]

        try:
            # Partitions: per file, the bad one failed, the others materialized (two by the run without one)
            visit("/assets/orders?view=partitions")
            page.get_by_text("Failed (1)", exact=True).wait_for()
            page.get_by_text("Materialized (3)", exact=True).wait_for()
            _shot(page, ui, "partitions")
            for label in ("Materialized (3)", "Materializing (0)", "Missing (0)"):
                page.get_by_text(label, exact=True).click()  # leave only the failed ones listed
            page.get_by_text("0 Partitions Selected", exact=False).or_(
                page.get_by_text("1 Partitions Selected", exact=False)
            ).first.wait_for()
            seen["failed"] = page.inner_text("body")
            _shot(page, ui, "partitions-failed")
            visit(f"/assets/orders?view=partitions&partition={RENAMED}")
            page.get_by_text("etl/file_of_run", exact=True).first.wait_for()
            seen["renamed"] = body_from("Latest materialization")
            _shot(page, ui, "partition-renamed")

            # Checks: the quarantine WARN with its sample table; the drift check's one-line description
            visit("/assets/orders?view=checks")
            for name, key in (("quarantine", "sample"), ("schema_drift", "changes")):
                page.get_by_text(name, exact=True).filter(visible=True).first.click()
                page.get_by_text(key, exact=True).filter(visible=True).first.wait_for()
                page.get_by_text("Evaluation result", exact=True).first.wait_for()
                seen[name] = body_from("Latest execution")
                _shot(page, ui, f"check-{name}")

            # Columns after a no-op rerun of the last partition: the declared columns, from its materialization
            _partition_run(ui["env"], LAST)
            visit("/assets/orders")
            page.get_by_text("records_processed", exact=True).first.wait_for()
            seen["overview"] = body_from("Latest materialization")
            _shot(page, ui, "overview-after-noop")
        except Exception:
            _shot(page, ui, "failure")  # what the browser saw
            raise
        finally:
            browser.close()

    failed_list = seen["failed"][seen["failed"].index("Partitions Selected") :]
    assert BAD in failed_list and GOOD not in failed_list and LAST not in failed_list, failed_list[:800]
    assert "ingest_orders" in seen["renamed"] and "file_rows" in seen["renamed"], seen["renamed"][:800]
    quarantine = seen["quarantine"]
    assert "Failed" in quarantine and "1 row(s) quarantined in this run" in quarantine, quarantine[:800]
    assert "expected 7 fields, saw 8" in quarantine and LAST in quarantine, quarantine[
        :800
    ]  # the table's row
    drift = seen["schema_drift"]
    # the rename 28's run learned, applied to 30 (decision `explicit` from then on), named with its file
    assert re.search(rf"quantity <- qty \([01]\.\d+\)( \w+)? in {re.escape(LAST)}", drift), drift[:800]
    columns = seen["overview"][seen["overview"].index("Columns") :]
    assert "Updated" in columns.split("Metadata")[0], columns[
        :800
    ]  # from a materialization, not the definition
    for name in ("order_id", "customer_id", "product", "quantity", "unit_price", "ordered_at", "status"):
        assert name in columns.split("Metadata")[0], columns[:800]
    processed = re.search(r"records_processed\s.*?\s(\d+)\n", seen["overview"], re.S)
    assert processed and processed.group(1) == "0", seen["overview"][:1500]  # the no-op run is the latest
