"""Typing that never guesses: integers exact (never through float64), values beyond int64 quarantined row by row,
one day/month order per date column (decided by its values or by `dayfirst` / `date_format`), on SQLite and
PostgreSQL, through the real ingest loop (CSV files on disk, an API on the loopback server, the CLI)."""

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from etl_assets.config import ApiSource, CsvSource
from etl_assets.pipeline import ingest

from .loopback import Reply

BIG = 9007199254740993  # 2^53 + 1: float64 reads it as 2^53
BEYOND = "beyond the 64-bit integer range; declare the column `string`"


def csv_source(path: Path, **kw) -> CsvSource:
    return CsvSource(name="t", kind="csv", path=str(path), **kw)


def api_source(url: str, name: str = "t", **kw) -> ApiSource:
    return ApiSource(name=name, kind="api", url=url, retry={"max_retries": 0, "delay_seconds": 0.01}, **kw)


def query(wh, sql: str) -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql).fetchall()]


def quarantined(wh) -> list[tuple]:
    return query(wh, "SELECT row_number, reason FROM etl_quarantine ORDER BY row_number")


def storage_type(wh, column: str) -> set[str]:
    """How the database holds the column's values: SQLite's storage class, PostgreSQL's column type."""
    fn = "typeof" if wh.dialect == "sqlite" else "pg_typeof"
    return {r[0] for r in query(wh, f"SELECT CAST({fn}({column}) AS TEXT) FROM t WHERE {column} IS NOT NULL")}


INTEGER_STORAGE = {"integer", "bigint"}


@pytest.fixture(autouse=True)
def no_traceback(caplog):
    caplog.set_level(logging.INFO)
    yield
    assert not [line for line in caplog.text.splitlines() if line.startswith("Traceback")]


@pytest.mark.parametrize("gap", ["", "NA", " "], ids=["empty", "null-word", "blank"])
def test_ids_past_2_53_stay_distinct_and_exact_and_a_key_gap_is_quarantined(tmp_path, warehouse, gap):
    # "" keeps Arrow's fast path; "NA" and a blank send the column through the general path
    (tmp_path / "a.csv").write_text(
        f"id,name\n{BIG},a\n{BIG - 1},b\n{gap},c\n-9223372036854775808,d\n 7 ,e\n"
    )
    stats = ingest(csv_source(tmp_path / "a.csv", primary_key=["id"]), warehouse, "r1")
    assert stats.schema["id"] == "integer"
    assert (stats.inserted, stats.failed) == (4, 1)
    assert query(warehouse, "SELECT id, name FROM t ORDER BY id") == [
        (-9223372036854775808, "d"),
        (7, "e"),
        (BIG - 1, "b"),
        (BIG, "a"),
    ]
    assert storage_type(warehouse, "id") <= INTEGER_STORAGE
    assert quarantined(warehouse) == [(3, "primary key column 'id' is empty")]


def test_api_key_with_a_gap_is_inferred_integer_and_stored_as_integers(server, warehouse):
    # a JSON integer column with gaps stays integers (the API frame keeps the parsed values), never 1.0
    url = server.route(
        "/items",
        lambda r: Reply(
            body=[
                {"id": 1, "n": 10},
                {"id": None, "n": 11},
                {"id": 3, "n": None},
                {"n": 12},
                {"id": BIG, "n": 13},
            ]
        ),
    )
    stats = ingest(api_source(url, primary_key=["id"]), warehouse, "r1")
    assert stats.schema == {"id": "integer", "n": "integer"}
    got = query(warehouse, "SELECT CAST(id AS TEXT), n FROM t ORDER BY id")
    assert got[:2] == [("1", 10), ("3", None)]
    assert (
        storage_type(warehouse, "id") <= INTEGER_STORAGE and storage_type(warehouse, "n") <= INTEGER_STORAGE
    )
    reasons = [r for _, r in quarantined(warehouse)]
    assert reasons[:2] == ["primary key column 'id' is empty"] * 2
    # 2^53 + 1 beside a gap: exact
    assert got[2:] == [(str(BIG), 13)] and len(reasons) == 2


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "inferred"])
def test_values_beyond_int64_are_quarantined_and_the_rest_lands(tmp_path, warehouse, declared):
    lines = [
        "id,n",
        "1,5",
        "2,99999999999999999999",
        "3,123456789012345678901234567890",
        "4,9223372036854775807",
        "5,-9223372036854775809",
        "6,NA",
    ]
    if (
        declared
    ):  # spellings that would not infer `integer`: whole ones load exactly, the others are quarantined
        lines += ["7,12.0", "8,1e3", "9,1.5", "10,0x10", "11,9223372036854775808.0"]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    columns = {"id": "integer", "n": "integer"} if declared else None
    stats = ingest(csv_source(tmp_path / "a.csv", primary_key=["id"], columns=columns), warehouse, "r1")
    assert stats.schema["n"] == "integer"
    assert query(warehouse, "SELECT id, n FROM t ORDER BY id") == [
        (1, 5),
        (4, 9223372036854775807),
        (6, None),
    ] + ([(7, 12), (8, 1000)] if declared else [])
    got = quarantined(warehouse)
    assert [n for n, _ in got] == [2, 3, 5] + ([9, 10, 11] if declared else [])
    assert got[0][1] == f"column 'n': '99999999999999999999' is {BEYOND} to keep such values exactly as text"
    assert BEYOND in got[1][1] and "'123456789012345678901234567890'" in got[1][1] and BEYOND in got[2][1]
    if declared:
        assert [r for _, r in got[3:5]] == [
            "column 'n': '1.5' is not a valid integer",
            "column 'n': '0x10' is not a valid integer",
        ]
        assert BEYOND in got[5][1]
    assert (stats.inserted, stats.failed) == ((5, 6) if declared else (3, 3))


def test_a_thirty_digit_json_number_is_quarantined_and_the_page_lands(server, warehouse):
    body = [
        {"id": 1, "n": 123456789012345678901234567890, "price": 1.5, "flag": True},
        {"id": 2, "n": BIG, "price": 2, "flag": False},
        {"id": 3, "n": True, "price": None, "flag": None},
        {"id": 4, "n": 7.0, "price": 3.25, "flag": True},
    ]
    url = server.route("/items", lambda r: Reply(body=body))
    columns = {"id": "integer", "n": "integer", "price": "float", "flag": "boolean"}
    stats = ingest(api_source(url, primary_key=["id"], columns=columns), warehouse, "r1")
    assert query(warehouse, "SELECT id, n, price, flag FROM t ORDER BY id") == [
        (2, BIG, 2.0, False),
        (4, 7, 3.25, True),
    ]  # SQLite's 0/1 compare equal to False/True
    assert storage_type(warehouse, "price") <= {"real", "double precision"}  # a float column keeps floats
    assert quarantined(warehouse) == [
        (1, f"column 'n': '123456789012345678901234567890' is {BEYOND} to keep such values exactly as text"),
        (3, "column 'n': 'True' is not a valid integer"),
    ]
    assert (stats.inserted, stats.failed) == (2, 2)


def test_json_values_jsonb_cannot_hold_are_quarantined_not_the_batch(server, warehouse):
    # Python's json reads NaN and Infinity; PostgreSQL's jsonb refuses them, and \u0000, for the whole statement
    body = [
        {"id": 1, "tags": [1, "a"]},
        {"id": 2, "tags": [float("nan")]},
        {"id": 3, "tags": ["a\x00b"]},
        {"id": 4, "tags": [float("inf")]},
        {"id": 5, "tags": ["\\u0000 is text"]},
    ]
    url = server.route("/items", lambda r: Reply(body=body))
    stats = ingest(
        api_source(url, primary_key=["id"], columns={"id": "integer", "tags": "json"}), warehouse, "r1"
    )
    assert [i for (i,) in query(warehouse, "SELECT id FROM t ORDER BY id")] == [1, 5]
    assert quarantined(warehouse) == [
        (2, "column 'tags': '[nan]' is not valid JSON (NaN, Infinity or a value JSON cannot hold)"),
        (3, "column 'tags': " + repr(str(["a\x00b"])) + " contains a NUL byte"),
        (4, "column 'tags': '[inf]' is not valid JSON (NaN, Infinity or a value JSON cannot hold)"),
    ]
    assert (stats.inserted, stats.failed) == (2, 3)


def test_a_string_column_keeps_big_integers_exactly(tmp_path, server, warehouse):
    (tmp_path / "a.csv").write_text("id,code\n1,99999999999999999999\n2,\n3,007\n")
    ingest(
        csv_source(tmp_path / "a.csv", primary_key=["id"], columns={"id": "integer", "code": "string"}),
        warehouse,
        "r1",
    )
    assert query(warehouse, "SELECT id, code FROM t ORDER BY id") == [
        (1, "99999999999999999999"),
        (2, None),
        (3, "007"),
    ]
    url = server.route(
        "/items",
        lambda r: Reply(
            body=[
                {"id": 4, "code": 123456789012345678901234567890},
                {"id": 5, "code": BIG},
                {"id": 6, "code": None},
            ]
        ),
    )
    ingest(
        api_source(
            url, name="t_api", table="t", primary_key=["id"], columns={"id": "integer", "code": "string"}
        ),
        warehouse,
        "r2",
    )
    assert query(warehouse, "SELECT id, code FROM t WHERE id > 3 ORDER BY id") == [
        (4, "123456789012345678901234567890"),
        (5, str(BIG)),
        (6, None),
    ]
    assert quarantined(warehouse) == []


def test_a_float_column_keeps_floats(tmp_path, warehouse):
    (tmp_path / "a.csv").write_text("id,x\n1,1.5\n2,\n3,2\n4,NA\n5,1e3\n")
    stats = ingest(csv_source(tmp_path / "a.csv", primary_key=["id"]), warehouse, "r1")
    assert stats.schema["x"] == "float"
    assert query(warehouse, "SELECT id, x FROM t ORDER BY id") == [
        (1, 1.5),
        (2, None),
        (3, 2.0),
        (4, None),
        (5, 1000.0),
    ]
    assert storage_type(warehouse, "x") <= {"real", "double precision"}


def dates(wh, column: str = "d") -> list[tuple]:
    return query(wh, f"SELECT id, CAST({column} AS TEXT) FROM t ORDER BY id")


def test_mixed_day_month_dates_one_order_per_column(tmp_path, warehouse):
    # two values prove day-first (13/.., 14/..), one proves month-first: day-first; the contradiction is quarantined
    (tmp_path / "a.csv").write_text(
        "id,d\n1,01/02/2026\n2,13/02/2026\n3,02/13/2026\n4,14.02.2026\n5,2026-03-04\n6,\n7,31/02/2026\n"
    )
    stats = ingest(
        csv_source(tmp_path / "a.csv", primary_key=["id"], columns={"id": "integer", "d": "date"}),
        warehouse,
        "r1",
    )
    assert dates(warehouse) == [
        (1, "2026-02-01"),
        (2, "2026-02-13"),
        (4, "2026-02-14"),
        (5, "2026-03-04"),
        (6, None),
    ]
    assert quarantined(warehouse) == [
        (
            3,
            "column 'd': '02/13/2026' contradicts the day-first (day/month/year) order decided by this column's "
            "values; if that is wrong, set `dayfirst: false` or `date_format`",
        ),
        (7, "column 'd': '31/02/2026' is not a valid date"),
    ]
    assert stats.failed == 2


def minutes(wh, column: str) -> list[tuple]:
    """(id, the UTC time to the minute) whatever the session's time zone."""
    text = (
        f"strftime('%Y-%m-%d %H:%M', {column})"
        if wh.dialect == "sqlite"
        else f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"
    )
    return query(wh, f"SELECT id, {text} FROM t ORDER BY id")


def test_the_decided_order_holds_for_later_batches_of_the_run(tmp_path, warehouse):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.csv").write_text(
        "id,at\n1,13/02/2026 10:00\n2,01/02/2026 23:59:59\n3,05/03/2026\n4,02/13/2026 09:00\n"
    )
    (drop / "b.csv").write_text("id,at\n5,12/13/2026 08:00\n6,03/04/26 10:00 PM\n")
    spec = csv_source(
        drop / "*.csv", primary_key=["id"], chunk_rows=2, columns={"id": "integer", "at": "timestamp"}
    )
    stats = ingest(spec, warehouse, "r1")
    assert stats.batches == 3  # the first batch decides day-first; the later ones (month-first only) keep it
    assert minutes(warehouse, "at") == [
        (1, "2026-02-13 10:00"),
        (2, "2026-02-01 23:59"),
        (3, "2026-03-05 00:00"),
        (6, "2026-04-03 22:00"),
    ]
    got = query(
        warehouse, "SELECT location, row_number, reason FROM etl_quarantine ORDER BY location, row_number"
    )
    assert [(Path(f).name, n, r) for f, n, r in got] == [
        (
            "a.csv",
            4,
            "column 'at': '02/13/2026 09:00' contradicts the day-first (day/month/year) order decided by "
            "this column's values; if that is wrong, set `dayfirst: false` or `date_format`",
        ),
        (
            "b.csv",
            1,
            "column 'at': '12/13/2026 08:00' contradicts the day-first (day/month/year) order decided by "
            "this column's values; if that is wrong, set `dayfirst: false` or `date_format`",
        ),
    ]


def test_all_ambiguous_dates_load_month_first_with_a_warning_and_dots_day_first(tmp_path, warehouse, caplog):
    (tmp_path / "a.csv").write_text("id,us,eu\n1,01/02/2026,01.02.2026\n2,03/04/2026,3.4.2026\n")
    stats = ingest(csv_source(tmp_path / "a.csv", primary_key=["id"]), warehouse, "r1")
    assert stats.schema == {"id": "integer", "us": "date", "eu": "date"}
    assert query(warehouse, "SELECT id, CAST(us AS TEXT), CAST(eu AS TEXT) FROM t ORDER BY id") == [
        (1, "2026-01-02", "2026-02-01"),
        (2, "2026-03-04", "2026-04-03"),
    ]
    assert (
        "column 'us': 2 date value(s) fit both day-first and month-first; reading the column month-first"
        in caplog.text
    )


def test_dayfirst_and_date_format_keys(tmp_path, warehouse, make_sources):
    (tmp_path / "a.csv").write_text(
        "id,d,at,iso\n1,01/02/2026,01.02.2026 10:30,2026-02-13\n"
        "2,13/02/2026,13.02.2026 08:00,\n3,02/13/2026,13.02.2026 08:00,02/13/2026\n"
        "4,03/04/2026,2026-02-13T10:00:00Z,2026-01-01\n"
    )
    _, specs = make_sources(
        {
            "t": {
                "kind": "csv",
                "path": "a.csv",
                "primary_key": "id",
                "dayfirst": False,
                "date_format": {"at": "%d.%m.%Y %H:%M"},
                "columns": {"id": "integer", "d": "date", "at": "timestamp", "iso": "date"},
            }
        }
    )
    stats = ingest(specs["t"], warehouse, "r1")
    assert query(warehouse, "SELECT id, CAST(d AS TEXT), CAST(iso AS TEXT) FROM t ORDER BY id") == [
        (1, "2026-01-02", "2026-02-13"),
        (3, "2026-02-13", "2026-02-13"),
    ]
    assert minutes(warehouse, "at") == [(1, "2026-02-01 10:30"), (3, "2026-02-13 08:00")]
    assert quarantined(warehouse) == [
        (
            2,
            "column 'd': '13/02/2026' contradicts the month-first (month/day/year) order set by `dayfirst: false`",
        ),
        (4, "column 'at': '2026-02-13T10:00:00Z' does not match date_format '%d.%m.%Y %H:%M' of this column"),
    ]
    assert stats.failed == 2


def test_date_format_for_every_column(tmp_path, warehouse):
    (tmp_path / "a.csv").write_text("id,d\n1,13022026\n2,01022026\n3,2026-02-13\n4,\n")
    stats = ingest(
        csv_source(
            tmp_path / "a.csv",
            primary_key=["id"],
            date_format="%d%m%Y",
            columns={"id": "integer", "d": "date"},
        ),
        warehouse,
        "r1",
    )
    assert dates(warehouse) == [(1, "2026-02-13"), (2, "2026-02-01"), (4, None)]
    assert quarantined(warehouse) == [
        (3, "column 'd': '2026-02-13' does not match date_format '%d%m%Y' of this column")
    ]
    assert stats.failed == 1


def test_inference_reads_day_first_columns_and_leaves_contradictions_as_text(tmp_path, warehouse):
    (tmp_path / "a.csv").write_text(
        "id,eu,mixed\n1,13/02/2026,01/02/2026\n2,1/2/2026,13/02/2026\n3,,02/13/2026\n"
    )
    stats = ingest(csv_source(tmp_path / "a.csv", primary_key=["id"]), warehouse, "r1")
    assert stats.schema == {"id": "integer", "eu": "date", "mixed": "string"}  # nothing read in two orders
    assert query(warehouse, "SELECT id, CAST(eu AS TEXT), mixed FROM t ORDER BY id") == [
        (1, "2026-02-13", "01/02/2026"),
        (2, "2026-02-01", "13/02/2026"),
        (3, None, "02/13/2026"),
    ]


def test_cli_run_with_values_that_do_not_fit_prints_no_traceback(tmp_path):
    (tmp_path / "a.csv").write_text(
        f"id,n,d\n{BIG - 1},99999999999999999999,13/02/2026\n2,5,02/13/2026\n,6,01/02/2026\n"
        f"4,7,14/02/2026\n{BIG},8,01/03/2026\n"
    )
    (tmp_path / "sources.yaml").write_text(
        "t:\n  kind: csv\n  path: a.csv\n  primary_key: [id]\n  columns: {id: integer, n: integer, d: date}\n"
    )
    cli = str(Path(sys.executable).with_name("etl-assets"))
    db = tmp_path / "w.db"
    env = {
        **os.environ,
        "ETL_SOURCES": str(tmp_path / "sources.yaml"),
        "ETL_WAREHOUSE_URL": f"sqlite:///{db}",
    }
    res = subprocess.run([cli, "ingest"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "t: 5 processed, 2 inserted, 0 updated, 3 quarantined" in res.stdout
    assert not [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Traceback")]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, n, d FROM t ORDER BY id").fetchall() == [
            (4, 7, "2026-02-14"),
            (BIG, 8, "2026-03-01"),
        ]
        reasons = [r for (r,) in conn.execute("SELECT reason FROM etl_quarantine ORDER BY row_number")]
    assert BEYOND in reasons[0] and "contradicts the day-first" in reasons[1] and "is empty" in reasons[2]
