import pandas as pd
import pytest

from etl_assets.config import CsvSource
from etl_assets.pipeline import ingest
from etl_assets.warehouse import ROW_ID


def _csv(tmp_path, text, **kw):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return CsvSource(name="items", kind="csv", path=str(path), **kw)


def test_upsert_is_idempotent_and_counts_updates(tmp_path, warehouse):
    s = _csv(tmp_path, "id,v\n1,a\n2,b\n3,c\n", primary_key=["id"], columns={"id": "integer", "v": "string"})
    first = ingest(s, warehouse, "r1")
    assert (first.inserted, first.updated) == (3, 0)
    # a changed file is read again: unchanged rows are neither inserted nor updated
    s.path and open(s.path, "w").write("id,v\n1,a\n2,B\n3,c\n4,d\n")
    second = ingest(s, warehouse, "r2")
    assert (second.processed, second.inserted, second.updated, second.unchanged) == (4, 1, 1, 2)
    with warehouse.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT id, v, _etl_run_id FROM items ORDER BY id").fetchall()
    assert rows == [(1, "a", "r1"), (2, "B", "r2"), (3, "c", "r1"), (4, "d", "r2")]


def test_duplicate_keys_in_one_batch_keep_the_last(tmp_path, warehouse):
    s = _csv(tmp_path, "id,v\n1,a\n1,b\n", primary_key=["id"], columns={"id": "integer", "v": "string"})
    assert ingest(s, warehouse, "r1").inserted == 1
    with warehouse.engine.connect() as c:
        assert c.exec_driver_sql("SELECT v FROM items").scalar() == "b"


def test_without_primary_key_rows_keyed_by_position(tmp_path, warehouse):
    s = _csv(tmp_path, "v\nsame\nsame\nother\n")
    assert ingest(s, warehouse, "r1").inserted == 3  # identical rows at different positions are both kept
    with warehouse.engine.connect() as c:
        ids = [r[0] for r in c.exec_driver_sql(f"SELECT {ROW_ID} FROM items")]
    assert len(set(ids)) == 3
    # the same file read again (e.g. after a lost checkpoint) lands on the same identities
    warehouse.engine.dispose()
    with warehouse.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM etl_checkpoints")
    again = ingest(s, warehouse, "r2")
    assert (again.inserted, again.updated) == (0, 0)
    assert warehouse.row_count("items") == 3


def test_rows_quarantine_and_checkpoint_commit_together_or_not_at_all(tmp_path, warehouse):
    s = _csv(tmp_path, "id,v\n1,a\n", primary_key=["id"], columns={"id": "integer", "v": "string"})
    ingest(s, warehouse, "r1")
    before = warehouse.checkpoint("items")
    table = warehouse.ensure_table("items", {"id": "integer", "v": "string"}, ["id"])
    # a batch the database refuses (here: a column the table lacks) fails whole: rows, quarantine, checkpoint
    bad_rows = pd.DataFrame({"id": [2, 3], "v": ["b", "c"], "nope": [1, 2]}, dtype=object)
    with pytest.raises(Exception, match="nope"):
        warehouse.load(
            source="items",
            table=table,
            key=["id"],
            rows=bad_rows,
            quarantined=[{"location": "x", "row_number": 9, "reason": "r", "raw": None}],
            position={"files": {"moved": True}},
            run_id="r2",
            location="x",
        )
    assert warehouse.checkpoint("items") == before
    assert warehouse.row_count("items") == 1
    assert warehouse.row_count("etl_quarantine") == 0


def test_runs_recorded(tmp_path, warehouse):
    s = _csv(tmp_path, "id\n1\n", primary_key=["id"])
    ingest(s, warehouse, "r1")
    with warehouse.engine.connect() as c:
        row = c.exec_driver_sql(
            "SELECT source, source_type, status, records_processed, records_inserted "
            "FROM etl_runs WHERE run_id = 'r1'"
        ).one()
    assert tuple(row) == ("items", "csv", "success", 1, 1)


def test_values_survive_the_copy_text_format(tmp_path, warehouse):
    """Every character COPY's text format treats specially, NULLs, fractions of seconds and padded values land as
    they were (the batch is serialised column-wise, not row by row)."""
    text = (
        "id,s,n,f,b,ts,d\n"
        '1,"tab\there","line\nbreak",1.5,true,2024-01-02T03:04:05Z,2024-01-02\n'
        '2,"back\\slash \\N \\. ""q""","cr\rhere", 2.25 , No ,2024-01-02T03:04:05.123456+02:00, 2024-02-29 \n'
        "3,\\N,,NA,,,\n"
        "4,x,y,1e300,T,2024-01-02 03:04:05.5,2024-03-01\n"
    )
    (tmp_path / "data.csv").write_bytes(text.encode())
    s = CsvSource(
        name="items",
        kind="csv",
        path=str(tmp_path / "data.csv"),
        primary_key=["id"],
        columns={
            "id": "integer",
            "s": "string",
            "n": "string",
            "f": "float",
            "b": "boolean",
            "ts": "timestamp",
            "d": "date",
        },
    )
    stats = ingest(s, warehouse, "r1")
    assert (stats.inserted, stats.failed) == (4, 0)
    with warehouse.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT id, s, n, f, b, ts, d FROM items ORDER BY id").fetchall()
    got = [
        tuple(pd.Timestamp(v).isoformat() if k in (5, 6) and v is not None else v for k, v in enumerate(r))
        for r in rows
    ]
    ts = [
        pd.Timestamp(x).tz_convert("UTC").tz_localize(None).isoformat()
        for x in ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123456+02:00", "2024-01-02T03:04:05.5Z")
    ]
    norm = [
        (
            i,
            a,
            b,
            f,
            bool(bo) if bo is not None else None,
            pd.Timestamp(t).tz_localize(None).isoformat() if t else None,
            d,
        )
        for i, a, b, f, bo, t, d in got
    ]
    assert norm == [
        (1, "tab\there", "line\nbreak", 1.5, True, ts[0], "2024-01-02T00:00:00"),
        (2, 'back\\slash \\N \\. "q"', "cr\rhere", 2.25, False, ts[1], "2024-02-29T00:00:00"),
        (3, "\\N", None, None, None, None, None),
        (4, "x", "y", 1e300, True, ts[2], "2024-03-01T00:00:00"),
    ]
    # the same file again: nothing changed, nothing rewritten
    warehouse.engine.dispose()
    with warehouse.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM etl_checkpoints")
    again = ingest(s, warehouse, "r2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
