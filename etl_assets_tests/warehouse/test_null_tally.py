"""required_not_null asks `Warehouse.null_counts`: answered from the run's own tally when it has no NULL in the
columns asked, by a scan of the run's rows otherwise, or when some of the run's rows landed through another
process."""

from __future__ import annotations

from etl_assets.config import CsvSource
from etl_assets.pipeline import ingest
from etl_assets.warehouse import Warehouse


def test_null_counts_from_the_tally_or_a_scan(tmp_path, warehouse):
    path = tmp_path / "data.csv"
    path.write_text("id,v,w\n1,a,x\n2,,y\n3,c,z\n4,,q\n")
    spec = CsvSource(
        name="items",
        kind="csv",
        path=str(path),
        primary_key=["id"],
        columns={"id": "integer", "v": "string", "w": "string"},
    )
    ingest(spec, warehouse, "r1")
    assert warehouse.nulls.bound("items", "r1") == {"v": 2}
    assert warehouse.null_counts("items", ["v", "w"], "r1") == {"v": 2, "w": 0}  # v: scanned
    # w had no NULL when it was sent, so it is not scanned: a value blanked behind the loader's back since
    # (keeping the run's id) is not seen by this process ...
    with warehouse.engine.begin() as c:
        c.exec_driver_sql("UPDATE items SET w = NULL WHERE id = 1")
    assert warehouse.null_counts("items", ["w"], "r1") == {"w": 0}
    # ... but by any process that did not send the run's rows itself: it scans
    other = Warehouse(warehouse.url)
    assert other.nulls.bound("items", "r1") is None
    assert other.null_counts("items", ["v", "w"], "r1") == {"v": 2, "w": 1}
    other.dispose()


def test_a_run_whose_record_was_made_elsewhere_is_scanned(tmp_path, warehouse):
    """A step retried in a new process: its first attempt's rows landed through another one."""
    path = tmp_path / "data.csv"
    path.write_text("id,v\n1,\n")
    spec = CsvSource(
        name="items", kind="csv", path=str(path), primary_key=["id"], columns={"id": "integer", "v": "string"}
    )
    first = Warehouse(warehouse.url)
    ingest(spec, first, "r1")  # the first attempt, in its own process
    first.dispose()
    path.write_text("id,v\n1,\n2,b\n")
    ingest(
        spec, warehouse, "r1"
    )  # the retry: the same run id, its record already there; 2 lands, 1 unchanged
    assert warehouse.nulls.bound("items", "r1") is None
    assert warehouse.null_counts("items", ["v"], "r1") == {"v": 1}
