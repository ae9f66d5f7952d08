"""PostgreSQL: a batch whose keys are all new is COPYed straight into the table (no stage); a batch with a key the
table holds, or one another writer landed meanwhile, takes the staged upsert; exactly-once either way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import yaml

from etl_assets.config import CsvSource
from etl_assets.pipeline import ingest
from etl_assets.warehouse import ROW_ID, Warehouse

BIN = Path(sys.executable).parent
COLUMNS = {"id": "integer", "v": "string"}


def _source(tmp_path: Path, **kw) -> CsvSource:
    (tmp_path / "drop").mkdir(exist_ok=True)
    return CsvSource(name="items", kind="csv", path=str(tmp_path / "drop" / "*.csv"), **kw)


def _drop(tmp_path: Path, name: str, rows: list[tuple[int, str]]) -> None:
    (tmp_path / "drop" / name).write_text("id,v\n" + "".join(f"{i},{v}\n" for i, v in rows))


def _rows(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql)]


def test_first_load_and_keys_above_the_largest_go_straight_into_the_table(tmp_path, pg_warehouse):
    wh = pg_warehouse
    spec = _source(tmp_path, primary_key=["id"], columns=COLUMNS, chunk_rows=2)
    _drop(tmp_path, "a.csv", [(1, "a"), (2, "b"), (3, "c")])
    first = ingest(spec, wh, "r1")
    assert (first.inserted, first.batches) == (3, 2)
    assert wh.sql.batches == {"direct": 2, "staged": 0}  # the empty table, then keys above its largest
    # the lineage went into the COPY payload: the last batch's run, file and time are the checkpoint's
    lineage = _rows(wh, "SELECT _etl_run_id, _etl_source, _etl_loaded_at FROM items WHERE id = 3")
    moved = _rows(wh, "SELECT updated_at FROM etl_checkpoints WHERE source = 'items'")
    assert lineage == [("r1", str(tmp_path / "drop" / "a.csv"), moved[0][0])]
    _drop(tmp_path, "b.csv", [(4, "d"), (5, "e")])
    assert ingest(spec, wh, "r2").inserted == 2
    assert wh.sql.batches == {"direct": 3, "staged": 0}
    # a key the table holds: the staged upsert (3 changed, 6 new), never a unique violation
    _drop(tmp_path, "c.csv", [(3, "C"), (6, "f")])
    third = ingest(spec, wh, "r3")
    assert (third.inserted, third.updated) == (1, 1)
    assert wh.sql.batches == {"direct": 3, "staged": 1}
    assert _rows(wh, "SELECT id, v, _etl_run_id FROM items ORDER BY id") == [
        (1, "a", "r1"),
        (2, "b", "r1"),
        (3, "C", "r3"),
        (4, "d", "r2"),
        (5, "e", "r2"),
        (6, "f", "r3"),
    ]


def test_a_key_landed_meanwhile_rolls_the_copy_back_to_its_savepoint(tmp_path, pg_url, pg_warehouse):
    """Another writer holds key 5 uncommitted when the batch 4..6 probes the table (largest key 3): the COPY
    waits on it, meets the unique violation once it commits, and the batch lands the staged way in the same
    transaction: 4 and 6 inserted, 5 updated to the batch's value."""
    wh = pg_warehouse
    spec = _source(tmp_path, primary_key=["id"], columns=COLUMNS)
    _drop(tmp_path, "a.csv", [(1, "a"), (2, "b"), (3, "c")])
    ingest(spec, wh, "r1")
    other = psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    other.execute("INSERT INTO items (id, v, _etl_run_id) VALUES (5, 'other', 'x')")  # not committed yet
    _drop(tmp_path, "b.csv", [(4, "d"), (5, "e"), (6, "f")])
    done: dict = {}
    loader = threading.Thread(target=lambda: done.setdefault("stats", ingest(spec, wh, "r2")))
    loader.start()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the loader's COPY is waiting for our row's transaction
            waiting = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'etl-assets' "
                "AND wait_event_type = 'Lock' AND query LIKE 'COPY%'"
            ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the direct COPY never waited on the uncommitted key")
    other.commit()
    other.close()
    loader.join(30)
    stats = done["stats"]
    assert (stats.inserted, stats.updated) == (2, 1)
    assert wh.sql.batches == {"direct": 1, "staged": 1}
    assert _rows(wh, "SELECT id, v FROM items WHERE id > 3 ORDER BY id") == [(4, "d"), (5, "e"), (6, "f")]


def test_row_ids_met_again_fall_back_and_the_run_stays_staged(tmp_path, pg_warehouse):
    """Without a primary key the row ids of a file version are new unless it was loaded before: a lost
    checkpoint makes the first direct COPY meet them; that batch and the run's next ones are staged."""
    wh = pg_warehouse
    spec = _source(tmp_path, chunk_rows=2)
    _drop(tmp_path, "a.csv", [(i, f"v{i}") for i in range(1, 6)])
    assert ingest(spec, wh, "r1").inserted == 5
    assert wh.sql.batches == {"direct": 3, "staged": 0}
    with wh.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM etl_checkpoints")
    again = ingest(spec, wh, "r2")
    assert (again.processed, again.inserted, again.updated) == (5, 0, 0)
    assert wh.sql.batches == {"direct": 3, "staged": 3}
    assert _rows(wh, f"SELECT count(*), count(DISTINCT {ROW_ID}) FROM items") == [(5, 5)]


def test_kill_9_between_the_direct_copy_and_the_commit_then_rerun_is_exactly_once(tmp_path, pg_url):
    n, chunk = 5_000, 500
    with (tmp_path / "big.csv").open("w") as f:
        f.write("id,v\n" + "".join(f"{i},v{i}\n" for i in range(1, n + 1)))
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        yaml.safe_dump(
            {"big": {"kind": "csv", "path": "big.csv", "primary_key": ["id"], "chunk_rows": chunk}}
        )
    )
    cmd = [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", pg_url]
    env = {**os.environ, "ETL_FAULTS": "before_checkpoint_write=crash@nth=4"}  # batch 4's COPY is in
    crashed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    wh = Warehouse(pg_url)
    assert wh.row_count("big") == 3 * chunk  # batch 4 went with its transaction
    assert wh.checkpoint("big")["files"][str(tmp_path / "big.csv")]["rows"] == 3 * chunk
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    got = _rows(wh, "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(id) FROM big")
    assert got == [(n, n, 1, n, n * (n + 1) // 2)]  # 0 lost, 0 duplicated
    assert _rows(wh, "SELECT records_processed FROM etl_runs WHERE status = 'success'") == [(n - 3 * chunk,)]
    wh.dispose()
