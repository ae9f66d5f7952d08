import json
import os
import re
from datetime import timedelta

import pytest
from dagster import (
    AssetCheckSeverity,
    Backoff,
    DagsterInstance,
    Jitter,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from etl_assets.defs import build_definitions
from etl_assets.defs.resources import WarehouseResource
from etl_assets.demo_api import serve
from etl_assets.warehouse import Warehouse

from ..conftest import REPO
from ..loopback import Reply


@pytest.fixture
def demo_api(monkeypatch):
    srv = serve("127.0.0.1", 0)
    monkeypatch.setenv("ETL_DEMO_API_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    yield srv
    srv.shutdown()


def _defs():
    return build_definitions(str(REPO / "sources.yaml"))


def test_definitions_jobs_schedules_sensors():
    defs = _defs()
    assert {j.name for j in defs.jobs} == {
        "ingest_all",
        "ingest_orders",
        "ingest_customers",
        "ingest_events",
        "ingest_releases",
    }
    assert {s.name: s.cron_schedule for s in defs.schedules} == {
        "customers_schedule": "0 * * * *",
        "events_schedule": "*/15 * * * *",
        "releases_schedule": "0 6 * * *",
    }
    assert [s.name for s in defs.sensors] == ["orders_drop_sensor", "etl_metrics_sensor"]
    graph = defs.resolve_asset_graph()
    orders = graph.get(next(k for k in graph.get_all_asset_keys() if k.path == ["orders"]))
    assert orders.group_name == "csv_sources" and "csv" in orders.kinds
    assert orders.pools == {"etl/orders"}
    policy = orders.assets_def.op.retry_policy
    assert (policy.max_retries, policy.backoff, policy.jitter) == (3, Backoff.EXPONENTIAL, Jitter.PLUS_MINUS)
    assert "nightly export" in orders.description
    # freshness: about two schedule intervals since the last materialization (warn at 1.5); none unscheduled
    fresh = {k.path[-1]: graph.get(k).freshness_policy for k in graph.get_all_asset_keys()}
    assert fresh["orders"] is None
    assert (fresh["customers"].fail_window.to_timedelta(), fresh["customers"].warn_window.to_timedelta()) == (
        timedelta(hours=2),
        timedelta(minutes=90),
    )
    assert fresh["events"].fail_window.to_timedelta() == timedelta(minutes=30)  # */15
    assert fresh["releases"].fail_window.to_timedelta() == timedelta(days=2)  # daily
    assert graph.get(next(k for k in graph.get_all_asset_keys() if k.path == ["customers"])).check_keys


def test_materialize_all_assets_into_postgres(demo_api, pg_url):
    defs = _defs()
    assets = [a for a in defs.assets]
    instance = DagsterInstance.ephemeral()
    result = materialize(assets, resources={"warehouse": WarehouseResource(url=pg_url)}, instance=instance)
    assert result.success
    md = {
        n: result.asset_materializations_for_node(n)[-1].metadata
        for n in ("orders", "customers", "events", "releases")
    }
    assert {n: m["records_inserted"].value for n, m in md.items()} == {
        "orders": 199,
        "customers": 60,
        "events": 90,
        "releases": 12,
    }
    assert md["orders"]["records_failed"].value == 1  # 'two' is not a quantity
    db = pg_url.rsplit("/", 1)[1]
    assert md["orders"]["dagster/table_name"].value == f"{db}.public.orders"  # PostgreSQL has schemas
    assert "http_requests" not in md["orders"] and md["customers"]["http_requests"].value > 0
    assert md["orders"]["dagster/row_count"].value == 199
    assert [c.name for c in md["customers"]["dagster/column_schema"].schema.columns] == [
        "id",
        "name",
        "email",
        "country",
        "signed_up_at",
        "vip",
    ]
    assert md["events"]["checkpoint"].value == {"next": None, "watermark": "2026-11-25T13:39:00Z"}
    for m in md.values():
        assert {"records_processed", "records_updated", "duration_seconds", "source_location"} <= set(m)
    events = json.loads((REPO / "examples" / "api" / "events.json").read_text())
    with Warehouse(pg_url).engine.connect() as c:  # a missing value is NULL, never NaN or 'nan'
        assert (
            c.exec_driver_sql("SELECT count(*) FROM events WHERE amount IS NULL").scalar()
            == sum(e["amount"] is None for e in events)
            > 0
        )
        assert c.exec_driver_sql("SELECT count(*) FROM events WHERE amount = 'NaN'").scalar() == 0
    counts = Warehouse(pg_url).row_counts()
    assert (counts["orders"], counts["customers"], counts["events"], counts["releases"]) == (199, 60, 90, 12)
    again = materialize(assets, resources={"warehouse": WarehouseResource(url=pg_url)}, instance=instance)
    assert (
        sum(
            again.asset_materializations_for_node(n)[-1].metadata["records_inserted"].value
            for n in ("orders", "customers", "events", "releases")
        )
        == 0
    )
    # nothing inserted: the row count is carried from the last materialization, not counted again
    assert {
        n: again.asset_materializations_for_node(n)[-1].metadata["dagster/row_count"].value
        for n in ("orders", "customers", "events", "releases")
    } == {"orders": 199, "customers": 60, "events": 90, "releases": 12}


def test_source_error_fails_the_step_with_one_line_and_no_retry(server, make_sources, pg_url):
    url = server.route("/gone", lambda r: Reply(404, {"message": "Not Found"}))
    path, _ = make_sources(
        {"gone": {"kind": "api", "url": url, "retry": {"max_retries": 3, "delay_seconds": 0.01}}}
    )
    defs = build_definitions(str(path))
    result = materialize(
        list(defs.assets), resources={"warehouse": WarehouseResource(url=pg_url)}, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"source 'gone': GET {url}: HTTP 404 Not Found" in failure.step_failure_data.error.message
    assert len(server.hits("/gone")) == 1  # a 404 is not retried by the RetryPolicy


def test_drop_sensor_requests_one_run_per_new_or_changed_file(tmp_path, make_sources):
    drop = tmp_path / "drop"
    drop.mkdir()
    path, _ = make_sources({"orders": {"kind": "csv", "path": "drop/*.csv"}})
    sensor = build_definitions(str(path)).sensors[0]
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance)
        assert isinstance(sensor(ctx), SkipReason)
        (drop / "a.csv").write_text("id\n1\n")
        ctx = build_sensor_context(instance=instance, cursor=None)
        [req] = sensor(ctx).run_requests  # one run per file, its partition (test_partitions.py: the rest)
        assert isinstance(req, RunRequest) and req.run_key.startswith("orders:a.csv:")
        assert req.partition_key == "a.csv"
        cursor = ctx.cursor
        assert "a.csv" in json.loads(cursor)
        # the same file on the next tick: nothing; a re-evaluated tick from the old cursor: the same run key
        assert isinstance(sensor(build_sensor_context(instance=instance, cursor=cursor)), SkipReason)
        assert (
            sensor(build_sensor_context(instance=instance, cursor=None)).run_requests[0].run_key
            == req.run_key
        )
        (drop / "a.csv").write_text("id\n1\n2\n")
        os.utime(drop / "a.csv", ns=(1, 10**18))
        [changed] = sensor(build_sensor_context(instance=instance, cursor=cursor)).run_requests
        assert changed.partition_key == "a.csv" and changed.run_key != req.run_key


ORDER_COLUMNS = {"order_id": "integer", "quantity": "integer", "status": "string"}


def test_checks_tell_what_they_saw_quarantine_drift_and_a_blocked_load(tmp_path, make_sources):
    drop = tmp_path / "drop"
    drop.mkdir()
    good = "".join(f"{i},{i},new\n" for i in range(1, 50))
    (drop / "orders_1.csv").write_text(f"order_id,quantity,status\n{good}50,two,new\n", encoding="utf-8")
    path, _ = make_sources(
        {
            "orders": {
                "kind": "csv",
                "path": "drop/orders_*.csv",
                "primary_key": ["order_id"],
                "columns": ORDER_COLUMNS,
                "drift": {"required": ["order_id", "quantity"]},
            }
        }
    )
    res = {"warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}")}
    instance = DagsterInstance.ephemeral()

    def run(raise_on_error: bool = True):
        result = materialize(
            list(build_definitions(str(path)).assets),
            resources=res,
            instance=instance,
            raise_on_error=raise_on_error,
        )
        return result, {c.check_name: c for c in result.get_asset_check_evaluations()}

    _, checks = run()
    assert set(checks) == {"schema_drift", "primary_key_unique", "required_not_null", "quarantine"}
    for c in checks.values():  # the check history reads one line per result, never "-"
        assert c.description and "\n" not in c.description
    q = checks["quarantine"]
    assert not q.passed and q.severity == AssetCheckSeverity.WARN
    assert q.metadata["quarantined_rows"].value == 1
    [row] = q.metadata["sample"].value.records
    assert (row.data["row"], row.data["file"]) == (50, "orders_1.csv") and "quantity" in row.data["reason"]
    assert q.description.startswith("1 row(s) quarantined in this run, first: row 50 of orders_1.csv")
    assert checks["schema_drift"].passed and checks["schema_drift"].metadata["changes"].value.records == []

    (drop / "orders_2.csv").write_text("order_id,qty,status\n51,5,new\n52,6,new\n", encoding="utf-8")
    _, checks = run()
    drift = checks["schema_drift"]
    assert not drift.passed and drift.severity == AssetCheckSeverity.WARN
    assert re.fullmatch(r"quantity <- qty \(0\.\d{3}\) in orders_2\.csv", drift.description)
    [change] = [r.data for r in drift.metadata["changes"].value.records]
    assert (change["file"], change["expected"], change["observed"], change["decision"]) == (
        "orders_2.csv",
        "quantity",
        "qty",
        "auto_mapped",
    )
    assert (
        checks["quarantine"].passed and checks["quarantine"].description == "no row quarantined in this run"
    )

    # A file without the required column blocks the load: only schema_drift fails; the others are evaluated on
    # what the warehouse holds (this run wrote nothing), so none of them shows as failed.
    (drop / "orders_3.csv").write_text("order_id,status\n53,new\n", encoding="utf-8")
    result, checks = run(raise_on_error=False)
    assert not result.success
    assert set(checks) == {"schema_drift", "primary_key_unique", "required_not_null", "quarantine"}
    drift = checks["schema_drift"]
    assert not drift.passed and drift.severity == AssetCheckSeverity.ERROR
    assert drift.description.startswith("blocked: required column 'quantity'")
    assert drift.description.endswith("in orders_3.csv")
    assert all(checks[n].passed for n in ("primary_key_unique", "required_not_null", "quarantine"))
    assert "drift blocked the load" in checks["primary_key_unique"].description


def test_metadata_columns_before_the_first_run_carried_on_no_op_runs_and_bounded(tmp_path, make_sources):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a_1.csv").write_text("order_id,quantity,status\n1,3,new\n", encoding="utf-8")
    (drop / "b_1.csv").write_text("id,name\n1,x\n", encoding="utf-8")
    path, _ = make_sources(
        {
            "declared": {
                "kind": "csv",
                "path": "drop/a_*.csv",
                "primary_key": ["order_id"],
                "columns": ORDER_COLUMNS,
            },
            "inferred": {"kind": "csv", "path": "drop/b_*.csv", "primary_key": ["id"]},
        }
    )
    defs = build_definitions(str(path))
    graph = defs.resolve_asset_graph()
    specs = {key.path[-1]: graph.get(key) for key in graph.get_all_asset_keys()}
    declared = specs["declared"].metadata["dagster/column_schema"].schema
    assert [(c.name, c.type) for c in declared.columns] == list(ORDER_COLUMNS.items())  # before any run
    assert "dagster/column_schema" not in specs["inferred"].metadata  # nothing declared: nothing to show yet

    res = {"warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.db'}")}
    instance = DagsterInstance.ephemeral()

    def run() -> dict:  # one source per run: each CSV source has partitions of its own
        out = {}
        for asset_def in build_definitions(str(path)).assets:
            result = materialize([asset_def], resources=res, instance=instance)
            out[asset_def.key.path[-1]] = result.asset_materializations_for_node(asset_def.key.path[-1])[
                -1
            ].metadata
        return out

    first = run()
    assert [c.name for c in first["inferred"]["dagster/column_schema"].schema.columns] == ["id", "name"]
    assert first["declared"]["dagster/table_name"].value == "declared"  # SQLite: no schemas to qualify with
    for md in first.values():  # a CSV source makes no HTTP request: no HTTP or rate-limit series
        assert not {k for k in md if k.startswith(("http_", "rate_limit_"))}
    noop = run()
    assert noop["inferred"]["records_processed"].value == 0
    for n in ("declared", "inferred"):  # no header seen: the last schema carried forward, never an empty one
        assert noop[n]["dagster/column_schema"].schema == first[n]["dagster/column_schema"].schema
        assert noop[n]["checkpoint"].value == {"files": {}}
    (drop / "b_2.csv").write_text("id,name\n2,y\n", encoding="utf-8")
    third = run()
    assert list(third["inferred"]["checkpoint"].value["files"]) == [
        str(drop / "b_2.csv")
    ]  # this run's file only
