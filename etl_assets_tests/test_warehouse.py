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
        warehouse.load(source="items", table=table, key=["id"], rows=bad_rows,
                       quarantined=[{"location": "x", "row_number": 9, "reason": "r", "raw": None}],
                       position={"files": {"moved": True}}, run_id="r2", location="x")
    assert warehouse.checkpoint("items") == before
    assert warehouse.row_count("items") == 1
    assert warehouse.row_count("etl_quarantine") == 0


def test_runs_recorded(tmp_path, warehouse):
    s = _csv(tmp_path, "id\n1\n", primary_key=["id"])
    ingest(s, warehouse, "r1")
    with warehouse.engine.connect() as c:
        row = c.exec_driver_sql("SELECT source, source_type, status, records_processed, records_inserted "
                                "FROM etl_runs WHERE run_id = 'r1'").one()
    assert tuple(row) == ("items", "csv", "success", 1, 1)
