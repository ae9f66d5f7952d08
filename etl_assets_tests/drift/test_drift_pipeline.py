"""Schema drift through the ingest loop, into PostgreSQL, and as asset checks."""

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa
from dagster import AssetCheckSeverity, materialize

from etl_assets.config import CsvSource
from etl_assets.defs import build_definitions
from etl_assets.defs.resources import WarehouseResource
from etl_assets.pipeline import ingest
from etl_assets.reconcile import DriftBlocked

COLUMNS = {
    "order_id": "integer",
    "customer_id": "integer",
    "quantity": "integer",
    "unit_price": "float",
    "status": "string",
}
OLD = "order_id,customer_id,quantity,unit_price,status\n1,7,2,9.50,new\n2,8,1,4.25,paid\n"


def orders(drop, **kw):
    kw.setdefault("drift", {"required": ["order_id", "quantity"]})
    return CsvSource(
        name="orders", kind="csv", path=str(drop / "*.csv"), primary_key=["order_id"], columns=COLUMNS, **kw
    )


def drift_rows(wh):
    with wh.engine.connect() as c:
        return [
            tuple(r)
            for r in c.exec_driver_sql(
                "SELECT expected, observed, decision FROM etl_schema_drift ORDER BY id"
            ).fetchall()
        ]


@pytest.fixture
def drop(tmp_path):
    d = tmp_path / "drop"
    d.mkdir()
    (d / "a.csv").write_text(OLD)
    return d


def test_each_classification_recorded_and_rename_lands_in_the_right_column(drop, pg_warehouse):
    ingest(orders(drop), pg_warehouse, "r1")
    # the next export: a case/space change, an abbreviation, a dropped column and a new one
    (drop / "b.csv").write_text(
        "Order ID,customer_id,qty,unit price,channel\n3,9,5,1.00,web\n4,9,6,2.00,app\n"
    )
    stats = ingest(orders(drop), pg_warehouse, "r2")
    assert (stats.inserted, stats.failed) == (2, 0)
    with pg_warehouse.engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT order_id, quantity, unit_price, status, channel FROM orders "
            "WHERE order_id > 2 ORDER BY order_id"
        ).fetchall()
    assert rows == [(3, 5, 1.0, None, "web"), (4, 6, 2.0, None, "app")]
    assert drift_rows(pg_warehouse) == [
        ("quantity", "qty", "auto_mapped"),
        ("status", None, "removed"),
        (None, "channel", "added"),
    ]
    report = stats.drift[0]
    assert {m.expected: m.decision for m in report.mappings} == {
        "order_id": "exact",
        "customer_id": "exact",
        "quantity": "auto_mapped",
        "unit_price": "exact",
        "status": "unmapped",
    }
    # remembered: the same header in the next drop does not alert again
    (drop / "c.csv").write_text("Order ID,customer_id,qty,unit price,channel\n5,1,1,1.00,web\n")
    again = ingest(orders(drop), pg_warehouse, "r3")
    assert again.inserted == 1
    assert [m.decision for m in again.drift[0].mappings if m.expected == "quantity"] == ["explicit"]
    assert ("quantity", "qty", "auto_mapped") not in drift_rows(pg_warehouse)[3:]


def test_missing_required_column_stops_the_load_with_nothing_committed(drop, pg_warehouse):
    ingest(orders(drop), pg_warehouse, "r1")
    before = pg_warehouse.checkpoint("orders")
    # "pieces" added at the end, not in quantity's place: nothing backs it as a rename
    (drop / "b.csv").write_text("order_id,customer_id,unit_price,status,pieces\n3,9,1.0,new,5\n")
    with pytest.raises(DriftBlocked) as err:
        ingest(orders(drop), pg_warehouse, "r2")
    msg = str(err.value)
    assert msg.startswith(
        f"source 'orders': {drop / 'b.csv'}: required column 'quantity' has no credible match"
    )
    assert "(best: 'pieces' 0." in msg and "column_map" in msg
    assert pg_warehouse.row_count("orders") == 2
    assert pg_warehouse.checkpoint("orders") == before
    assert ("quantity", None, "unmapped") in drift_rows(pg_warehouse)
    # the user maps it: the file loads
    stats = ingest(orders(drop, column_map={"pieces": "quantity"}), pg_warehouse, "r3")
    assert stats.inserted == 1
    with pg_warehouse.engine.connect() as c:
        assert c.exec_driver_sql("SELECT quantity FROM orders WHERE order_id = 3").scalar() == 5


def test_missing_required_under_quarantine_policy(drop, pg_warehouse):
    (drop / "a.csv").write_text("order_id,customer_id,pieces\n1,2,3\n")
    s = orders(drop, drift={"required": ["order_id", "quantity"], "on_missing_required": "quarantine"})
    stats = ingest(s, pg_warehouse, "r1")
    assert (stats.inserted, stats.failed) == (0, 1)
    with pg_warehouse.engine.connect() as c:
        reason = c.exec_driver_sql("SELECT reason FROM etl_quarantine").scalar()
    assert "required column 'quantity' has no credible match" in reason


def test_type_change_detected_and_values_quarantined(drop, pg_warehouse):
    (drop / "a.csv").write_text("order_id,customer_id,quantity,unit_price,status\n1,7,two,cheap,new\n")
    stats = ingest(orders(drop), pg_warehouse, "r1")
    assert stats.failed == 1
    assert {t["column"] for t in stats.drift[0].type_changes} == {"quantity", "unit_price"}
    assert ("quantity", "quantity", "type_changed:integer->string") in drift_rows(pg_warehouse)


@pytest.mark.parametrize(
    "policy, expect",
    [("ignore", ["order_id", "customer_id", "quantity", "unit_price", "status"]), ("fail", None)],
)
def test_new_column_policies(drop, pg_warehouse, policy, expect):
    (drop / "a.csv").write_text("order_id,customer_id,quantity,unit_price,status,extra\n1,7,2,9.5,new,x\n")
    s = orders(drop, drift={"on_new_column": policy})
    if expect is None:
        with pytest.raises(DriftBlocked, match=r"new column\(s\) \['extra'\]"):
            ingest(s, pg_warehouse, "r1")
        return
    ingest(s, pg_warehouse, "r1")
    cols = [c["name"] for c in sa.inspect(pg_warehouse.engine).get_columns("orders")]
    assert [c for c in cols if not c.startswith("_etl")] == expect


def test_hostile_header_is_a_column_name_not_sql(drop, pg_warehouse):
    evil = 'amount"; DROP TABLE orders; --'
    (drop / "a.csv").write_text(
        f'order_id,customer_id,quantity,unit_price,status,"{evil.replace(chr(34), 2 * chr(34))}"\n'
        "1,7,2,9.5,new,13\n"
    )
    stats = ingest(orders(drop), pg_warehouse, "r1")
    assert stats.inserted == 1
    cols = [c["name"] for c in sa.inspect(pg_warehouse.engine).get_columns("orders")]
    assert evil in cols
    with pg_warehouse.engine.connect() as c:
        assert c.execute(sa.text(f'SELECT "{evil.replace(chr(34), 2 * chr(34))}" FROM orders')).scalar() == 13
    assert (None, evil, "added") in drift_rows(pg_warehouse)


def test_checks_in_materialize_results(tmp_path, make_sources, pg_url):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(OLD)
    cfg = {
        "orders": {
            "kind": "csv",
            "path": "drop/*.csv",
            "primary_key": ["order_id"],
            "columns": COLUMNS,
            "drift": {"required": ["order_id", "quantity"]},
        }
    }
    path, _ = make_sources(cfg)
    res = {"warehouse": WarehouseResource(url=pg_url)}
    first = materialize(list(build_definitions(str(path)).assets), resources=res)
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {"schema_drift", "primary_key_unique", "required_not_null", "quarantine"}
    assert all(c.passed for c in checks.values())

    (drop / "b.csv").write_text("order_id,customer_id,qty,unit_price,status\n3,9,5,1.0,new\n3,9,6,1.0,new\n")
    second = materialize(list(build_definitions(str(path)).assets), resources=res)
    checks = {c.check_name: c for c in second.get_asset_check_evaluations()}
    drift = checks["schema_drift"]
    assert not drift.passed and drift.severity == AssetCheckSeverity.WARN
    assert drift.metadata["renamed"].value == 1
    assert (
        "| quantity | qty | 0.9" in drift.metadata["mappings"].value
        and "auto_mapped" in drift.metadata["mappings"].value
    )
    assert not checks["primary_key_unique"].passed  # key 3 twice in the file
    assert checks["primary_key_unique"].metadata["repeated_keys_in_source"].value == 1

    (drop / "c.csv").write_text("order_id,customer_id,unit_price,status,pieces\n9,9,1.0,new,5\n")
    third = materialize(list(build_definitions(str(path)).assets), resources=res, raise_on_error=False)
    assert not third.success
    drift = next(c for c in third.get_asset_check_evaluations() if c.check_name == "schema_drift")
    assert not drift.passed and drift.severity == AssetCheckSeverity.ERROR
    assert "required column 'quantity'" in drift.metadata["blocked"].value


def test_required_not_null_check_fails_on_nulls(tmp_path, make_sources, pg_url):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text("order_id,customer_id,quantity,unit_price,status\n1,7,,9.5,new\n")
    path, _ = make_sources(
        {"orders": {"kind": "csv", "path": "drop/*.csv", "primary_key": ["order_id"], "columns": COLUMNS}}
    )
    result = materialize(
        list(build_definitions(str(path)).assets), resources={"warehouse": WarehouseResource(url=pg_url)}
    )
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "required_not_null")
    assert not check.passed and check.metadata["null_counts"].value["quantity"] == 1


def test_drift_check_cli_exit_codes_and_json(tmp_path, make_sources):
    path, _ = make_sources(
        {"orders": {"kind": "csv", "path": "drop/*.csv", "primary_key": ["order_id"], "columns": COLUMNS}}
    )
    ok = tmp_path / "ok.csv"
    ok.write_text("ORDER_ID,customer_id,qty,unit_price,status,channel\n1,2,3,1.5,new,web\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("order_id,customer_id,unit_price,status\n1,2,1.5,new\n")

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "etl_assets.cli", "drift-check", *args, "--sources", str(path)],
            capture_output=True,
            text=True,
        )

    res = run("orders", str(ok), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert set(report) == {"source", "mappings", "added", "removed", "type_changes"}
    assert {m["expected"]: (m["observed"], m["decision"]) for m in report["mappings"]} == {
        "order_id": ("ORDER_ID", "exact"),
        "customer_id": ("customer_id", "exact"),
        "quantity": ("qty", "auto_mapped"),
        "unit_price": ("unit_price", "exact"),
        "status": ("status", "exact"),
    }
    assert report["added"] == ["channel"] and report["removed"] == []
    res = run("orders", str(bad))
    assert res.returncode == 1 and "BLOCKED: required column 'quantity' unmatched" in res.stdout
    assert run("orders", str(tmp_path / "missing.csv")).returncode == 2
    assert run("nosuch", str(ok)).returncode == 2
