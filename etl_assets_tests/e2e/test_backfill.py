"""A parallel backfill through the real run queue: `dagster job backfill` submits one run per file of `orders`,
the daemon's QueuedRunCoordinator starts them three at a time (the pool etl/orders, from max_concurrent_files),
each run lands its file into PostgreSQL. No row lost or landed twice, never more than three runs at once."""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy as sa
import yaml

from ..conftest import REPO, _create_db, _drop_db
from .test_stack_e2e import BIN, Stack, _instance_yaml, _pg_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FILES, ROWS = 21, 40
TIMEOUT = 420  # 21 runs, each a process importing Dagster, on two shared cores


def _max_overlap(intervals: list) -> int:
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    now = peak = 0
    for _, step in points:
        now += step
        peak = max(peak, now)
    return peak


def test_backfill_of_21_files_runs_three_at_a_time_and_lands_every_row_once(pg_server, tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    drop = tmp_path / "drop"
    drop.mkdir()
    for f in range(FILES):  # disjoint keys per file: any landing order gives the same table
        rows = "".join(f"{f * 1000 + i},{i},new\n" for i in range(ROWS))
        (drop / f"orders_{f:02d}.csv").write_text("order_id,quantity,status\n" + rows, encoding="utf-8")
    sources = {
        "orders": {
            "kind": "csv",
            "path": str(drop / "orders_*.csv"),
            "primary_key": ["order_id"],
            "columns": {"order_id": "integer", "quantity": "integer", "status": "string"},
            "max_concurrent_files": 3,
        }
    }
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(_instance_yaml(), encoding="utf-8")  # the production instance
    ws = tmp_path / "workspace.yaml"
    ws.write_text(
        yaml.safe_dump({"load_from": [{"python_module": {"module_name": "etl_assets.definitions"}}]}),
        encoding="utf-8",
    )
    storage_db, storage_url = _create_db(pg_server)
    warehouse_db, warehouse_url = _create_db(pg_server)
    env = {
        **os.environ,
        **_pg_env(storage_url),
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(tmp_path / "sources.yaml"),
        "ETL_WAREHOUSE_URL": warehouse_url,
        "PYTHONPATH": str(REPO),
        # each file's one commit takes 3 s, so the runs' ingests (not only their start-up) overlap
        "ETL_FAULTS": "before_commit=delay(3)",
    }
    stack = Stack(tmp_path, env)
    keys = [f"orders_{f:02d}.csv" for f in range(FILES)]
    try:
        migrate = subprocess.run(
            [str(BIN / "dagster"), "instance", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr[-2000:]
        for k, v in env.items():  # this process reads the same instance
            monkeypatch.setenv(k, v)
        instance = DagsterInstance.get()
        instance.add_dynamic_partitions("orders_files", keys)  # what the drop sensor's first tick does
        stack.start("daemon", str(BIN / "dagster-daemon"), "run", "-w", str(ws))
        backfill = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", str(ws), "-j", "ingest_orders"]
            + ["--partitions", ",".join(keys), "--noprompt"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert backfill.returncode == 0, backfill.stdout[-2000:] + backfill.stderr[-2000:]
        final = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

        def records():
            return instance.get_run_records(RunsFilter(job_name="ingest_orders"))

        stack.wait(
            "the backfill's runs",
            lambda: len(records()) == FILES and all(r.dagster_run.status in final for r in records()),
            TIMEOUT,
        )
        runs = records()
        assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}, stack.logs()
        assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == keys
        assert all(r.dagster_run.tags["etl/source"] == "orders" for r in runs)
        # the pool held: never more than three runs of the source at once, and they did overlap
        dagster_peak = _max_overlap([(r.start_time, r.end_time) for r in runs])
        engine = sa.create_engine(warehouse_url)
        with engine.connect() as c:
            ingests = c.execute(sa.text("SELECT started_at, finished_at, status FROM etl_runs")).all()
            count, distinct, total = c.execute(
                sa.text("SELECT count(*), count(DISTINCT order_id), sum(order_id) FROM orders")
            ).one()
            quarantined = c.execute(sa.text("SELECT count(*) FROM etl_quarantine")).scalar()
            position = c.execute(
                sa.text("SELECT position FROM etl_checkpoints WHERE source = 'orders'")
            ).scalar()
        engine.dispose()
        assert len(ingests) == FILES and {s for *_, s in ingests} == {"success"}
        ingest_peak = _max_overlap([(s, e) for s, e, _ in ingests])
        pool = instance.event_log_storage.get_concurrency_info("etl/orders")
        assert pool.slot_count == 3  # set from sources.yaml by the first run
        assert 2 <= ingest_peak <= 3 and dagster_peak <= 3, (ingest_peak, dagster_peak, stack.logs())
        assert "is blocked by global concurrency limits" in stack.log("daemon", 10**7)  # the queue held them
        # no row lost, none landed twice, every file's checkpoint entry kept (none overwritten by another run)
        expected = [f * 1000 + i for f in range(FILES) for i in range(ROWS)]
        assert (count, distinct, total, quarantined) == (len(expected), len(expected), sum(expected), 0)
        files = yaml.safe_load(position)["files"]
        assert sorted(os.path.basename(p) for p in files) == keys and all(
            s["complete"] for s in files.values()
        )
    finally:
        stack.stop()
        _drop_db(pg_server, storage_db)
        _drop_db(pg_server, warehouse_db)
