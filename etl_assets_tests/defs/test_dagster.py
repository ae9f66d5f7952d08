import json
import os

import pytest
from dagster import (
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


def test_materialize_all_assets_into_postgres(demo_api, pg_url):
    defs = _defs()
    assets = [a for a in defs.assets]
    instance = DagsterInstance.ephemeral()
    result = materialize(assets, resources={"warehouse": WarehouseResource(url=pg_url)}, instance=instance)
    assert result.success
    md = {
        n: result.asset_materializations_for_node(n)[0].metadata
        for n in ("orders", "customers", "events", "releases")
    }
    assert {n: m["records_inserted"].value for n, m in md.items()} == {
        "orders": 199,
        "customers": 60,
        "events": 90,
        "releases": 12,
    }
    assert md["orders"]["records_failed"].value == 1  # 'two' is not a quantity
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
            again.asset_materializations_for_node(n)[0].metadata["records_inserted"].value
            for n in ("orders", "customers", "events", "releases")
        )
        == 0
    )
    # nothing inserted: the row count is carried from the last materialization, not counted again
    assert {
        n: again.asset_materializations_for_node(n)[0].metadata["dagster/row_count"].value
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
        req = sensor(ctx)
        assert isinstance(req, RunRequest) and req.run_key.startswith("orders:")
        cursor = ctx.cursor
        assert str(drop / "a.csv") in json.loads(cursor)
        # the same file on the next tick: nothing; a re-evaluated tick from the old cursor: the same run key
        assert isinstance(sensor(build_sensor_context(instance=instance, cursor=cursor)), SkipReason)
        assert sensor(build_sensor_context(instance=instance, cursor=None)).run_key == req.run_key
        (drop / "a.csv").write_text("id\n1\n2\n")
        os.utime(drop / "a.csv", ns=(1, 10**18))
        changed = sensor(build_sensor_context(instance=instance, cursor=cursor))
        assert isinstance(changed, RunRequest) and changed.run_key != req.run_key
