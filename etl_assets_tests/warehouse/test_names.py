"""Column names are safe on every dialect, wide tables load, and a database error is one line without row values
(README "Bad input": naming rules)."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from etl_assets.column_names import column_name
from etl_assets.config import ApiSource, CsvSource
from etl_assets.errors import SourceError
from etl_assets.pipeline import ingest

from ..loopback import Reply


def rows(wh, sql: str) -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql).fetchall()]


def csv(tmp_path, text: str, name: str = "items", **kw) -> CsvSource:
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    return CsvSource(name=name, kind="csv", path=str(path), **kw)


def run_error(wh, source: str) -> str:
    return rows(wh, f"SELECT error FROM etl_runs WHERE source = '{source}' AND status = 'failure'")[-1][0]


def test_names_equal_but_for_case_are_refused_before_any_table_exists(tmp_path, warehouse):
    spec = csv(tmp_path, "Id,id,name\n1,2,a\n")
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    msg = str(err.value)
    assert msg.startswith(f"source 'items': {spec.path}: columns 'Id' and 'id' differ only in case")
    assert "column_map" in msg and "\n" not in msg
    assert not sa.inspect(warehouse.engine).has_table("items") and warehouse.checkpoint("items") is None
    assert run_error(warehouse, "items") == msg
    # declared columns and a column_map give one of them another name: then it loads, on every dialect
    fixed = csv(
        tmp_path,
        "Id,id,name\n1,2,a\n",
        columns={"id_upper": "integer", "id": "integer", "name": "string"},
        column_map={"Id": "id_upper"},
    )
    assert ingest(fixed, warehouse, "r2").inserted == 1
    assert rows(warehouse, "SELECT id_upper, id, name FROM items") == [(1, 2, "a")]


def test_api_keys_equal_but_for_case_are_refused(server, warehouse):
    url = server.route("/k", lambda r: Reply(body=[{"Name": "a", "name": "b"}]))
    with pytest.raises(SourceError, match=r"columns 'Name' and 'name' differ only in case"):
        ingest(ApiSource(name="k", kind="api", url=url), warehouse, "r1")


def test_long_names_that_shorten_to_one_are_refused_with_both_named(tmp_path, warehouse):
    long = "measurement_" + "x" * 80
    short = column_name(long)  # a header that already is the shortened form of the other
    assert len(short.encode()) <= 63 and short != long
    spec = csv(tmp_path, f"{long},{short}\n1,2\n")
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    msg = str(err.value)
    assert f"are both {short!r} once shortened to 63 bytes" in msg and len(msg) < 500
    assert not sa.inspect(warehouse.engine).has_table("items")
    # two long names sharing their first 50 bytes stay two columns
    spec = csv(tmp_path, f"{long}_a,{long}_b\n1,2\n", name="two")
    assert ingest(spec, warehouse, "r2").inserted == 1
    cols = [c["name"] for c in sa.inspect(warehouse.engine).get_columns("two")]
    assert {column_name(f"{long}_a"), column_name(f"{long}_b")} <= set(cols)


def test_names_equal_once_trimmed_are_refused(tmp_path, warehouse):
    with pytest.raises(SourceError, match=r"columns 'a' and ' a ' are both 'a' to the warehouse"):
        ingest(csv(tmp_path, "a, a \n1,2\n"), warehouse, "r1")


@pytest.mark.parametrize("header", ["_etl_source", "_ETL_RUN_ID", "_etl_row_id", "_etl_loaded_at"])
def test_a_lineage_name_in_the_source_is_renamed_with_a_warning(tmp_path, warehouse, caplog, header):
    spec = csv(tmp_path, f"id,{header}\n1,from the file\n2,also\n")
    with caplog.at_level(logging.WARNING, logger="etl_assets.pipeline"):
        stats = ingest(spec, warehouse, "r1")
    assert stats.inserted == 2
    warned = [r for r in caplog.records if getattr(r, "event", None) == "column_renamed"]
    assert len(warned) == 1 and f"column '{header}'" in warned[0].getMessage()
    got = rows(warehouse, f'SELECT id, "source_{header}", _etl_source, _etl_run_id FROM items ORDER BY id')
    assert got == [(1, "from the file", spec.path, "r1"), (2, "also", spec.path, "r1")]


def test_a_declared_lineage_name_is_refused(tmp_path, warehouse):
    spec = csv(tmp_path, "id,x\n1,2\n", columns={"id": "integer", "_etl_source": "string"})
    with pytest.raises(
        SourceError,
        match=r"column '_etl_source' of the schema is the name of the lineage column "
        r"'_etl_source'; fix: call it 'source__etl_source' in `columns`",
    ):
        ingest(spec, warehouse, "r1")


def _wide(n: int, rows_: int = 3, start: int = 0) -> str:
    head = ",".join(f"col_{i}" for i in range(n))
    body = "".join(
        ",".join(str(r + start) if i % 3 == 0 else f"v{r + start}_{i}" for i in range(n)) + "\n"
        for r in range(rows_)
    )
    return head + "\n" + body


def test_a_thousand_columns_load_and_update(tmp_path, warehouse):
    """SQLite: the changed-row test of the upsert is a balanced tree (a chain of 1000 ORs passed its expression
    depth limit); PostgreSQL: the wide table is laid out by alignment (a row must fit in 8160 bytes)."""
    spec = csv(tmp_path, _wide(1000), name="wide", primary_key=["col_0"])
    stats = ingest(spec, warehouse, "r1")
    assert (stats.inserted, stats.failed) == (3, 0)
    assert len(sa.inspect(warehouse.engine).get_columns("wide")) == 1003
    assert rows(warehouse, "SELECT col_0, col_1, col_998, col_999 FROM wide ORDER BY col_0") == [
        (r, f"v{r}_1", f"v{r}_998", r) for r in range(3)
    ]
    text = _wide(1000).replace("v1_500", "changed")  # one value of one row
    (tmp_path / "wide.csv").write_text(text)
    again = ingest(spec, warehouse, "r2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 2)
    assert rows(warehouse, "SELECT col_500 FROM wide WHERE col_0 = 1") == [("changed",)]


def test_a_thousand_columns_without_a_key(tmp_path, warehouse):
    spec = csv(tmp_path, _wide(1000, rows_=4), name="wide", chunk_rows=2)
    assert ingest(spec, warehouse, "r1").inserted == 4
    assert rows(warehouse, "SELECT count(*), count(DISTINCT _etl_row_id) FROM wide") == [(4, 4)]


def test_more_columns_than_the_dialect_allows_is_one_line_before_any_ddl(tmp_path, warehouse):
    n = warehouse.max_columns  # with the lineage columns the table would be too wide
    spec = csv(
        tmp_path, ",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("x" * n) + "\n", name="too_wide"
    )
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    assert f"the table would have {n + 4} columns" in str(err.value) and f"({n})" in str(err.value)
    assert not sa.inspect(warehouse.engine).has_table("too_wide")


def test_a_database_error_is_one_line_without_sql_or_row_values(tmp_path, warehouse):
    """A table made elsewhere refuses a value: the line names the table and the statement, never the value (a
    PostgreSQL check violation's DETAIL holds the row), the SQL or its parameters."""
    with warehouse.engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT CHECK (length(v) <= 3), "
            "_etl_run_id TEXT, _etl_loaded_at TIMESTAMP, _etl_source TEXT)"
        )
    spec = csv(tmp_path, "id,v\n1,ok\n2,ROW-VALUE-TOO-LONG\n", primary_key=["id"])
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    msg = str(err.value)
    kind = "INSERT of new rows"  # PostgreSQL: staged, as the table's lineage timestamp is not ours to COPY
    assert msg.startswith(f"source 'items': table items: {kind}") and "CHECK" in msg.upper()
    for leak in ("ROW-VALUE", "SELECT", "VALUES", "parameters", "\n"):
        assert leak not in msg, leak
    assert len(msg) < 500 and err.value.retryable is True  # IntegrityError: a race may also raise it
    stored = run_error(warehouse, "items")
    assert "ROW-VALUE" not in stored and len(stored) < 500
    assert warehouse.row_count("items") == 0 and warehouse.checkpoint("items") is None
