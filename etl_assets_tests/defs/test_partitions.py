"""Every dropped file a partition: one bad file fails alone, a partition reloads its file, runs without a
partition read every file, and runs of one file never overlap (runs of different files do)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, SkipReason, build_sensor_context

from etl_assets.config_load import load_sources
from etl_assets.defs import build_definitions
from etl_assets.defs.event_fold import read_event_log
from etl_assets.defs.resources import WarehouseResource
from etl_assets.pipeline import ingest
from etl_assets.source_lock import SourceLock
from etl_assets.warehouse import Warehouse

from ..conftest import REPO

COLUMNS = {"order_id": "integer", "quantity": "integer", "status": "string"}


def orders(rows: range) -> str:
    return "order_id,quantity,status\n" + "".join(f"{i},{i % 7},new\n" for i in rows)


@pytest.fixture
def drop(tmp_path):
    d = tmp_path / "drop"
    (d / "2026").mkdir(parents=True)
    (d / "orders_1.csv").write_text(orders(range(1, 6)))
    (d / "orders_2.csv").write_text("customer,note\nx,drift blocks this file\n")  # no required column
    (d / "2026" / "orders_3.csv").write_text(orders(range(6, 9)))
    return d


def _sources(make_sources, **extra):
    spec = {"kind": "csv", "path": "drop/**/orders_*.csv", "primary_key": ["order_id"], "columns": COLUMNS}
    return make_sources({"orders": {**spec, **extra}})[0]


def _run(defs, instance, url, partition=None, job="ingest_orders"):
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        partition_key=partition,
        resources={"warehouse": WarehouseResource(url=url)},
        raise_on_error=False,
    )


def test_a_bad_file_fails_its_partition_alone_and_a_partition_reloads_only_its_file(
    tmp_path, drop, make_sources
):
    defs = build_definitions(str(_sources(make_sources)))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse(url)
    with DagsterInstance.ephemeral() as instance:
        [sensor] = [s for s in defs.sensors if s.name == "orders_drop_sensor"]
        result = sensor(build_sensor_context(instance=instance))
        keys = ["2026/orders_3.csv", "orders_1.csv", "orders_2.csv"]  # paths below the glob's root
        assert [r.partition_key for r in result.run_requests] == keys
        assert len({r.run_key for r in result.run_requests}) == 3
        instance.add_dynamic_partitions("orders_files", result.dynamic_partitions_requests[0].partition_keys)
        assert sorted(instance.get_dynamic_partitions("orders_files")) == keys

        outcome = {k: _run(defs, instance, url, k).success for k in keys}
        assert outcome == {"2026/orders_3.csv": True, "orders_1.csv": True, "orders_2.csv": False}
        assert wh.row_count("orders") == 8  # the good files landed, around the bad one
        status = instance.get_status_by_partition(
            AssetKey("orders"), keys, defs.get_assets_def("orders").partitions_def
        )
        assert {k: s.value for k, s in status.items()} == {
            "2026/orders_3.csv": "MATERIALIZED",
            "orders_1.csv": "MATERIALIZED",
            "orders_2.csv": "FAILED",
        }
        files = wh.checkpoint("orders")["files"]  # one checkpoint entry per landed file
        assert sorted(files) == [str(drop / "2026" / "orders_3.csv"), str(drop / "orders_1.csv")]

        # re-materializing an unchanged file: a no-op that succeeds; a changed one: that file alone reloads
        again = _run(defs, instance, url, "orders_1.csv")
        md = again.asset_materializations_for_node("orders")[0].metadata
        assert again.success and md["records_processed"].value == 0
        (drop / "orders_1.csv").write_text(orders(range(1, 4)) + "99,1,late\n")
        changed = _run(defs, instance, url, "orders_1.csv")
        md = changed.asset_materializations_for_node("orders")[0].metadata
        assert changed.success and (md["records_processed"].value, md["records_inserted"].value) == (4, 1)
        assert list(md["checkpoint"].value["files"]) == [str(drop / "orders_1.csv")]  # this run's file only
        assert wh.row_count("orders") == 9

        # the bad file fixed: its partition lands; a partition whose file is gone fails with one line
        (drop / "orders_2.csv").write_text(orders(range(20, 22)))
        assert _run(defs, instance, url, "orders_2.csv").success and wh.row_count("orders") == 11
        (drop / "orders_2.csv").unlink()
        gone = _run(defs, instance, url, "orders_2.csv")
        [failure] = [e for e in gone.all_events if e.event_type_value == "STEP_FAILURE"]
        text = failure.step_failure_data.user_failure_data.description
        assert "orders_2.csv" in text and "not in the drop folder" in text and "\n" not in text
    wh.dispose()


def test_runs_without_a_partition_read_every_new_file_and_add_the_partitions(tmp_path, drop, make_sources):
    (drop / "orders_2.csv").write_text(orders(range(10, 12)))
    path = make_sources(
        {
            "orders": {"kind": "csv", "path": "drop/**/orders_*.csv", "primary_key": ["order_id"]},
            "more": {"kind": "csv", "path": "drop/orders_1.csv", "table": "more"},
        }
    )[0]
    defs = build_definitions(str(path))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with DagsterInstance.ephemeral() as instance:
        # ingest_all holds CSV sources of different partitions definitions: run without a partition key
        assert _run(defs, instance, url, job="ingest_all").success
        assert sorted(instance.get_dynamic_partitions("orders_files")) == [
            "2026/orders_3.csv",
            "orders_1.csv",
            "orders_2.csv",
        ]
        assert instance.get_dynamic_partitions("more_files") == ["orders_1.csv"]
        wh = Warehouse(url)
        assert (wh.row_count("orders"), wh.row_count("more")) == (10, 5)
        again = _run(defs, instance, url)  # ingest_orders without a partition: nothing new
        assert again.asset_materializations_for_node("orders")[0].metadata["records_processed"].value == 0
        wh.dispose()


def test_sensor_skips_versions_it_requested_and_names_no_unusable_key(tmp_path, drop, make_sources):
    (drop / "orders_...csv").write_text(orders(range(30, 31)))  # '...' cannot be in a partition key
    defs = build_definitions(str(_sources(make_sources)))
    [sensor] = [s for s in defs.sensors if s.name == "orders_drop_sensor"]
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance)
        first = sensor(ctx)
        assert "orders_...csv" not in {r.partition_key for r in first.run_requests}
        assert isinstance(sensor(build_sensor_context(instance=instance, cursor=ctx.cursor)), SkipReason)
        (drop / "orders_4.csv").write_text(orders(range(40, 42)))
        [req] = sensor(build_sensor_context(instance=instance, cursor=ctx.cursor)).run_requests
        assert req.partition_key == "orders_4.csv" and req.tags["etl/source"] == "orders"


def test_pool_limit_follows_max_concurrent_files(tmp_path, drop, make_sources):
    defs = build_definitions(str(_sources(make_sources, max_concurrent_files=3)))
    [sensor] = [s for s in defs.sensors if s.name == "orders_drop_sensor"]
    with DagsterInstance.local_temp(str(tmp_path)) as instance:  # SQLite storage: pools (in-memory: none)
        sensor(build_sensor_context(instance=instance))
        assert instance.event_log_storage.get_concurrency_info("etl/orders").slot_count == 3


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_runs_of_different_files_overlap_and_runs_of_one_file_wait(
    backend, tmp_path, drop, make_sources, request
):
    """The core without Dagster: the file locks and the checkpoint merged per file (no entry lost)."""
    (drop / "orders_2.csv").write_text(orders(range(10, 12)))
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'wh.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    spec = load_sources(_sources(make_sources))["orders"]
    wh = Warehouse(url)
    holder = SourceLock(wh.engine, "orders")  # a run of orders_1.csv under way
    holder.acquire(when_alone=lambda: None)
    holder.hold_files(["orders_1.csv"])
    done: dict[str, float] = {}

    def run(key: str) -> None:
        ingest(spec, Warehouse(url), f"run-{key}", [key])
        done[key] = time.monotonic()

    threads = [threading.Thread(target=run, args=(k,)) for k in ("orders_1.csv", "orders_2.csv")]
    for t in threads:
        t.start()
    threads[1].join(30)
    assert "orders_2.csv" in done and "orders_1.csv" not in done  # another file: not held up
    released = time.monotonic()
    holder.release()
    threads[0].join(30)
    assert done["orders_1.csv"] >= released  # the same file: waited for the holder
    ingest(spec, wh, "run-all")  # every file: the rest, then each file's entry in one checkpoint
    assert sorted(wh.checkpoint("orders")["files"]) == sorted(
        str(p) for p in (drop / "orders_1.csv", drop / "orders_2.csv", drop / "2026" / "orders_3.csv")
    )
    assert wh.row_count("orders") == 10
    wh.dispose()


def _status(instance, defs, keys):
    status = instance.get_status_by_partition(
        AssetKey("orders"), keys, defs.get_assets_def("orders").partitions_def
    )
    return {k: s.value if s else "MISSING" for k, s in status.items()}


def test_a_run_without_a_partition_marks_the_files_it_loaded_and_fails_the_bad_ones_partition(
    tmp_path, drop, make_sources
):
    """ingest_orders without a partition key: each file it landed shows materialized, the file that blocked it
    failed, the file after it (not reached) missing; the metrics count the run once, not once per file."""
    (drop / "orders_4.csv").write_text(orders(range(50, 52)))
    defs = build_definitions(str(_sources(make_sources)))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    keys = ["2026/orders_3.csv", "orders_1.csv", "orders_2.csv", "orders_4.csv"]
    with DagsterInstance.local_temp(str(tmp_path)) as instance:  # SQLite storage, as the embedded default
        failed = _run(defs, instance, url)
        assert not failed.success
        assert _status(instance, defs, keys) == {
            "2026/orders_3.csv": "MATERIALIZED",
            "orders_1.csv": "MATERIALIZED",
            "orders_2.csv": "FAILED",  # drift blocked the run here
            "orders_4.csv": "MISSING",  # a run of all files stops at the first that fails
        }
        assert "etl_materializations_total" not in read_event_log(instance).series  # a failed run: none

        (drop / "orders_2.csv").write_text(orders(range(20, 22)))
        fixed = _run(defs, instance, url)
        assert fixed.success and set(_status(instance, defs, keys).values()) == {"MATERIALIZED"}
        *per_file, own = fixed.asset_materializations_for_node("orders")  # the run's own last
        assert own.partition is None and own.metadata["dagster/row_count"].value == 12
        assert {m.partition: m.metadata["file_rows"].value for m in per_file} == {
            "orders_2.csv": 2,
            "orders_4.csv": 2,
        }
        assert all(m.metadata["etl/file_of_run"].value == "ingest_orders" for m in per_file)
        assert read_event_log(instance).get("etl_materializations_total") == {("orders",): 1}

        wh = Warehouse(url)
        with wh.engine.begin() as conn:  # a row deleted behind the loader's back
            conn.exec_driver_sql("DELETE FROM orders WHERE order_id = 50")
        noop = _run(defs, instance, url)  # the carry-over reads the run's own count, not a file's (none)
        [md] = [m.metadata for m in noop.asset_materializations_for_node("orders")]
        assert md["records_processed"].value == 0 and md["dagster/row_count"].value == 12
        wh.dispose()


def test_dagster_job_execute_of_ingest_orders_shows_every_file_materialized(tmp_path, drop, make_sources):
    """The real CLI on exactly the embedded default's dagster.yaml (SQLite): 3 files, 3 materialized partitions."""
    (drop / "orders_2.csv").write_text(orders(range(10, 12)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(_sources(make_sources)),
        "ETL_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    cmd = [dagster, "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_orders"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    defs = build_definitions(env["ETL_SOURCES"])
    with DagsterInstance.from_config(str(home)) as instance:
        keys = sorted(instance.get_dynamic_partitions("orders_files"))
        assert keys == ["2026/orders_3.csv", "orders_1.csv", "orders_2.csv"]
        assert _status(instance, defs, keys) == dict.fromkeys(keys, "MATERIALIZED")
