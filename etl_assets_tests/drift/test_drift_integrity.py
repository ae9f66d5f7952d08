"""Drift never misplaces data silently: swapped headers, suggestions, one confidence per pair, drift-check = run.

Through the real ingest loop on SQLite and PostgreSQL (`warehouse`), real CSV files, the real `etl-assets` CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from etl_assets.config import ConfigError
from etl_assets.defs.checks import drift_check
from etl_assets.drift import ColumnProfile, detect_drift, shown
from etl_assets.errors import SourceError
from etl_assets.pipeline import ingest
from etl_assets.reconcile import DriftBlocked

COLUMNS = {
    "order_id": "integer",
    "customer_id": "integer",
    "quantity": "integer",
    "unit_price": "float",
    "status": "string",
}
HEADER = ["order_id", "customer_id", "quantity", "unit_price", "status"]
# "unit_price" as "price_eur", moved to the end: one shared word and no position to back it, so a suggestion
PRICE_LAST = ["order_id", "customer_id", "quantity", "status", "price_eur"]
PRICE_LAST_KEYS = ["order_id", "customer_id", "quantity", "status", "unit_price"]


def rows(first: int, n: int = 40) -> list[dict[str, str]]:
    """Orders of a shop: customer ids in the hundreds, quantities 1-5, prices with cents."""
    return [
        {
            "order_id": str(i),
            "customer_id": str(100 + (i * 37) % 90),
            "quantity": str(1 + i % 5),
            "unit_price": f"{(i * 7) % 20 + 0.5:.2f}",
            "status": ("new", "paid", "sent")[i % 3],
        }
        for i in range(first, first + n)
    ]


def write(path, header: list[str], records: list[dict[str, str]], keys: list[str] | None = None) -> None:
    """A CSV with `header` over the values of `keys` (default: the header's own names)."""
    keys = keys or header
    path.write_text(",".join(header) + "\n" + "".join(",".join(r[k] for k in keys) + "\n" for r in records))


@pytest.fixture
def src(tmp_path, make_sources):
    """A sources file for `orders` over tmp/drop/*.csv: returns (sources path, spec) for the given overrides."""
    (tmp_path / "drop").mkdir()

    def make(**kw):
        cfg = {"kind": "csv", "path": "drop/*.csv", "primary_key": ["order_id"], **kw}
        path, specs = make_sources({"orders": cfg})
        return path, specs["orders"]

    return make


def drift_rows(wh) -> list[tuple]:
    with wh.engine.connect() as c:
        return [
            tuple(r)
            for r in c.exec_driver_sql(
                "SELECT expected, observed, confidence, decision FROM etl_schema_drift ORDER BY id"
            ).fetchall()
        ]


def table(wh, cols: str, where: str = "") -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(f"SELECT {cols} FROM orders {where} ORDER BY order_id")]


def drift_check_cli(sources, file, wh, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "etl_assets.cli",
            "drift-check",
            "orders",
            str(file),
            "--sources",
            str(sources),
            "--url",
            wh.url,
            *extra,
        ],
        capture_output=True,
        text=True,
    )


# --- swapped headers ---------------------------------------------------------------------------------------


def test_swapped_headers_are_blocked_recorded_and_loadable_by_policy(tmp_path, src, warehouse):
    sources, spec = src(columns=COLUMNS)
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    before = warehouse.checkpoint("orders")
    # the next export exchanged two header names: customer ids under "quantity" and the reverse
    swapped = ["order_id", "quantity", "customer_id", "unit_price", "status"]
    write(tmp_path / "drop/b.csv", swapped, rows(41), keys=HEADER)
    with pytest.raises(DriftBlocked) as err:
        ingest(spec, warehouse, "r2")
    msg = str(err.value)
    assert msg.startswith(f"source 'orders': {tmp_path / 'drop/b.csv'}: the headers look swapped: ")
    assert "the values under 'quantity' fit 'customer_id'" in msg and "drift.on_swap: warn" in msg
    assert "\n" not in msg
    assert warehouse.row_count("orders") == 40 and warehouse.checkpoint("orders") == before
    events = {(e, o, d) for e, o, _, d in drift_rows(warehouse)}
    assert events == {("customer_id", "customer_id", "swapped"), ("quantity", "quantity", "swapped")}
    check = drift_check([err.value.report], blocked=err.value.problem)
    assert not check.passed and check.metadata["swapped"].value == 2

    # the header's fix in column_map: every value lands in its own column
    _, mapped = src(columns=COLUMNS, column_map={"quantity": "customer_id", "customer_id": "quantity"})
    assert ingest(mapped, warehouse, "r3").inserted == 40
    assert table(warehouse, "customer_id, quantity", "WHERE order_id = 41") == [
        (100 + 41 * 37 % 90, 1 + 41 % 5)
    ]


def test_swap_under_warn_loads_as_the_header_says_with_the_event(tmp_path, src, warehouse):
    _, spec = src(columns=COLUMNS, drift={"on_swap": "warn"})
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    write(
        tmp_path / "drop/b.csv",
        ["order_id", "quantity", "customer_id", "unit_price", "status"],
        rows(41),
        keys=HEADER,
    )
    stats = ingest(spec, warehouse, "r2")
    assert (stats.inserted, stats.failed) == (40, 0)
    assert [d for _, _, _, d in drift_rows(warehouse)] == ["swapped", "swapped"]
    check = drift_check(stats.drift)
    assert (
        not check.passed
        and check.metadata["swapped"].value == 2
        and "swapped" in check.metadata["mappings"].value
    )


def test_similar_columns_that_were_not_swapped_load_clean(tmp_path, src, warehouse):
    # small counts with overlapping ranges that trade places from file to file (a detector without a margin
    # reads the last file as quantity <-> boxes), and a tiny file whose profile is rough: alike, not swapped
    cols = {"order_id": "integer", "quantity": "integer", "boxes": "integer", "rating": "integer"}
    _, spec = src(columns=cols)
    files = [
        (25, (1, 4), (2, 6), (1, 5)),
        (3, (2, 6), (1, 4), (1, 5)),
        (25, (1, 4), (2, 6), (2, 5)),
        (25, (2, 6), (1, 4), (1, 3)),
    ]
    first = 1
    for n, (size, (qlo, qhi), (blo, bhi), (rlo, rhi)) in enumerate(files):
        recs = [
            {
                "order_id": str(i),
                "quantity": str(qlo + i % (qhi - qlo + 1)),
                "boxes": str(blo + (i * 3) % (bhi - blo + 1)),
                "rating": str(rlo + (i * 7) % (rhi - rlo + 1)),
            }
            for i in range(first, first + size)
        ]
        first += size
        write(tmp_path / f"drop/{n}.csv", list(cols), recs)
        stats = ingest(spec, warehouse, f"r{n}")
        assert (stats.inserted, stats.failed) == (size, 0)
    assert drift_rows(warehouse) == []
    assert table(warehouse, "quantity, boxes", "WHERE order_id = 54") == [(2 + 54 % 5, 1 + 54 * 3 % 4)]


def test_a_rotation_of_three_headers_is_a_swap_too():
    prev = {
        "small": ColumnProfile.of([str(i % 5) for i in range(60)]),
        "mid": ColumnProfile.of([str(100 + i) for i in range(60)]),
        "big": ColumnProfile.of([str(100000 + i * 13) for i in range(60)]),
    }
    sample = {
        "small": [str(100 + i) for i in range(60)],
        "mid": [str(100000 + i * 13) for i in range(60)],
        "big": [str(i % 5) for i in range(60)],
    }
    report = detect_drift(dict.fromkeys(prev, "integer"), list(prev), sample, previous_profiles=prev)
    assert {m.expected: (m.decision, m.swapped_with) for m in report.mappings} == {
        "small": ("swapped", "big"),
        "mid": ("swapped", "small"),
        "big": ("swapped", "mid"),
    }


# --- a suggestion is never also a new column ----------------------------------------------------------------


def test_inferred_schema_suggestion_is_not_added_and_never_loads_nulls_silently(tmp_path, src, warehouse):
    _, spec = src()  # no `columns`: the first load pins the inferred schema
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    renamed = PRICE_LAST
    write(tmp_path / "drop/b.csv", renamed, rows(41), keys=PRICE_LAST_KEYS)
    with pytest.raises(DriftBlocked) as err:
        ingest(spec, warehouse, "r2")
    assert "column 'unit_price' may be 'price_eur'" in str(err.value)
    assert [(e, o, d) for e, o, _, d in drift_rows(warehouse)] == [("unit_price", "price_eur", "suggested")]
    report = err.value.report
    assert report.added == [] and report.removed == ["unit_price"]
    assert "price_eur" not in {c["name"] for c in sa.inspect(warehouse.engine).get_columns("orders")}
    assert warehouse.row_count("orders") == 40

    # accepted: the prices land in unit_price
    _, accepted = src(column_map={"price_eur": "unit_price"})
    assert ingest(accepted, warehouse, "r3").inserted == 40
    assert table(warehouse, "unit_price", "WHERE order_id = 41") == [(41 * 7 % 20 + 0.5,)]

    # refused ("price is a column of its own"): added, and unit_price reported removed, never both suggested
    write(tmp_path / "drop/c.csv", renamed, rows(81), keys=PRICE_LAST_KEYS)
    _, own = src(column_map={"price_eur": "price_eur"})
    stats = ingest(own, warehouse, "r4")
    assert stats.inserted == 40
    assert [(e, o, d) for e, o, _, d in drift_rows(warehouse)][1:] == [
        ("unit_price", None, "removed"),
        (None, "price_eur", "added"),
    ]
    assert table(warehouse, "unit_price, price_eur", "WHERE order_id = 81") == [(None, 81 * 7 % 20 + 0.5)]


def test_suggestion_under_quarantine_policy_quarantines_the_batch_with_the_reason(tmp_path, src, warehouse):
    _, spec = src(drift={"on_missing_required": "quarantine"})
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    write(
        tmp_path / "drop/b.csv",
        PRICE_LAST,
        rows(41),
        keys=PRICE_LAST_KEYS,
    )
    stats = ingest(spec, warehouse, "r2")
    assert (stats.inserted, stats.failed) == (0, 40)
    with warehouse.engine.connect() as c:
        reasons = {r for (r,) in c.exec_driver_sql("SELECT reason FROM etl_quarantine")}
    assert len(reasons) == 1 and reasons.pop().startswith(
        "column 'unit_price' may be 'price_eur' (confidence 0."
    )
    assert warehouse.row_count("orders") == 40


# --- one confidence per pair ----------------------------------------------------------------------------------


def test_one_confidence_per_pair_in_error_table_check_and_drift_check(tmp_path, src, warehouse):
    sources, spec = src(columns=COLUMNS)
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")  # pins value profiles: evidence the drift-check must use too
    new = tmp_path / "drop/b.csv"
    write(new, PRICE_LAST, rows(41), keys=PRICE_LAST_KEYS)
    with pytest.raises(DriftBlocked) as err:
        ingest(spec, warehouse, "r2")
    in_error = float(re.search(r"may be 'price_eur' \(confidence (\d\.\d+)", str(err.value)).group(1))
    [(_, _, in_table, _)] = [r for r in drift_rows(warehouse) if r[:2] == ("unit_price", "price_eur")]
    check = drift_check([err.value.report], blocked=err.value.problem)
    assert f"| unit_price | price_eur | {shown(in_table)} | suggested |" in check.metadata["mappings"].value

    res = drift_check_cli(sources, new, warehouse, "--json")
    assert res.returncode == 1, res.stderr
    [m] = [m for m in json.loads(res.stdout)["mappings"] if m["expected"] == "unit_price"]
    assert (m["observed"], m["decision"]) == ("price_eur", "suggested")
    assert in_error == in_table == m["confidence"]
    assert "a run would stop: " + str(err.value) in res.stderr  # the same line as the run's


def test_drift_check_reads_accepted_renames_like_a_run(tmp_path, src, warehouse):
    sources, spec = src(columns=COLUMNS)  # declared columns: the warehouse state still counts
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    write(
        tmp_path / "drop/b.csv",
        ["order_id", "customer_id", "qty", "unit_price", "status"],
        rows(41),
        keys=HEADER,
    )
    assert [
        m.decision for m in ingest(spec, warehouse, "r2").drift[0].mappings if m.expected == "quantity"
    ] == ["auto_mapped"]
    nxt = tmp_path / "c.csv"
    write(nxt, ["order_id", "customer_id", "qty", "unit_price", "status"], rows(81), keys=HEADER)
    res = drift_check_cli(sources, nxt, warehouse, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert {m["expected"]: (m["observed"], m["decision"]) for m in report["mappings"]}["quantity"] == (
        "qty",
        "explicit",
    )
    # the run on that file decides the same
    (tmp_path / "drop/c.csv").write_text(nxt.read_text())
    run = ingest(spec, warehouse, "r3").drift[0]
    assert [(m.expected, m.observed, m.decision) for m in run.mappings] == [
        (m["expected"], m["observed"], m["decision"]) for m in report["mappings"]
    ]


# --- an exact name beside a remembered rename's source --------------------------------------------------------


def test_exact_name_beside_an_accepted_rename_source(tmp_path, src, warehouse):
    sources, spec = src(columns=COLUMNS)
    write(tmp_path / "drop/a.csv", HEADER, rows(1))
    ingest(spec, warehouse, "r1")
    write(
        tmp_path / "drop/b.csv",
        ["order_id", "cust_id", "quantity", "unit_price", "status"],
        rows(41),
        keys=HEADER,
    )
    ingest(spec, warehouse, "r2")
    with warehouse.engine.connect() as c:
        assert json.loads(c.exec_driver_sql("SELECT accepted FROM etl_schemas").scalar()) == {
            "cust_id": "customer_id"
        }
    # both columns: the plain name wins, the remembered rename's source is a column of its own
    both = tmp_path / "drop/c.csv"
    recs = [{**r, "cust_id": str(int(r["order_id"]) * 1000)} for r in rows(81, 5)]
    write(both, ["order_id", "customer_id", "cust_id", "quantity", "unit_price", "status"], recs)
    res = drift_check_cli(sources, both, warehouse, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert {m["expected"]: (m["observed"], m["decision"]) for m in report["mappings"]}["customer_id"] == (
        "customer_id",
        "exact",
    )
    assert report["added"] == ["cust_id"]
    stats = ingest(spec, warehouse, "r3")
    assert (stats.inserted, stats.failed) == (5, 0)
    assert table(warehouse, "customer_id, cust_id", "WHERE order_id = 81") == [(100 + 81 * 37 % 90, 81000)]
    assert drift_rows(warehouse)[-1][1:] == ("cust_id", None, "added")


def test_column_map_source_beside_its_target_is_refused_in_one_line(tmp_path, src, warehouse):
    _, spec = src(columns=COLUMNS, column_map={"cust_id": "customer_id"})
    recs = [{**r, "cust_id": r["customer_id"]} for r in rows(1, 5)]
    write(
        tmp_path / "drop/a.csv",
        ["order_id", "customer_id", "cust_id", "quantity", "unit_price", "status"],
        recs,
    )
    with pytest.raises(DriftBlocked) as err:
        ingest(spec, warehouse, "r1")
    assert str(err.value) == (
        f"source 'orders': {tmp_path / 'drop/a.csv'}: columns 'cust_id' and 'customer_id' would both load into "
        "'customer_id'; fix: keep one of the two columns in the file, or drop the `column_map` entry for 'cust_id'"
    )
    assert [(e, o, d) for e, o, _, d in drift_rows(warehouse)] == [("customer_id", "customer_id", "conflict")]
    assert warehouse.checkpoint("orders") is None
    # two spellings of one column (SQLite could not even hold both names): refused in one line too
    (tmp_path / "drop/a.csv").unlink()
    recs = [{**r, "Status": "x"} for r in rows(1, 5)]
    write(tmp_path / "drop/b.csv", [*HEADER, "Status"], recs)
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r2")
    assert "'status' and 'Status'" in str(err.value) and "\n" not in str(err.value)
    assert warehouse.checkpoint("orders") is None


def test_on_swap_key_defaults_to_fail_and_is_validated(make_sources):
    _, specs = make_sources({"o": {"kind": "csv", "path": "x/*.csv"}})
    assert specs["o"].drift.on_swap == "fail"
    _, specs = make_sources({"o": {"kind": "csv", "path": "x/*.csv", "drift": {"on_swap": "warn"}}})
    assert specs["o"].drift.on_swap == "warn"
    with pytest.raises(ConfigError, match="on_swap"):
        make_sources({"o": {"kind": "csv", "path": "x/*.csv", "drift": {"on_swap": "maybe"}}})
