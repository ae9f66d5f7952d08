"""CSV load throughput: `psql \\copy` vs the CSV asset materialized through Dagster, in the same run.

    python benchmarks/csv_load.py --rows 3000000
    python benchmarks/csv_load.py --rows 20000000 --skip-sqlite --skip-copy   # the ~2 GB memory check

Generates an N-row, 9-column CSV; loads it with `psql \\copy` into a fresh typed table; then through the CSV
asset (`dagster job execute`, drift check, coercion, quarantine, upsert, checkpoint) into a fresh PostgreSQL
database. The asset's load time is the wall time of the run on the file minus that of a run on an empty drop
folder (Dagster's fixed start-up). Then the rerun on the unchanged file, the SQLite default, and dlt's merge load
when a side environment has dlt (ETL_BENCH_DLT_PYTHON, default /tmp/dltvenv/bin/python; dlt is not a
dependency of this project).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PG_ADMIN_URL,
    create_db,
    dagster_execute,
    dagster_home,
    drop_db,
    latest_metadata,
    print_table,
    run_timed,
    tempdir,
    write_result,
)

COLUMNS = {
    "id": "integer",
    "name": "string",
    "email": "string",
    "amount": "float",
    "quantity": "integer",
    "active": "boolean",
    "created_at": "timestamp",
    "day": "date",
    "note": "string",
}
PG_TYPES = {
    "integer": "bigint",
    "string": "text",
    "float": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamptz",
    "date": "date",
}


def generate(path: Path, rows: int, chunk: int = 1_000_000, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    base = np.datetime64("2024-01-01T00:00:00", "s")
    with path.open("w", newline="") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start + 1, start + n + 1)
            ts = base + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
            frame = pd.DataFrame(
                {
                    "id": ids,
                    "name": np.char.add("name_", ids.astype(str)),
                    "email": np.char.add(np.char.add("user", ids.astype(str)), "@example.com"),
                    "amount": np.round(rng.random(n) * 10_000, 2),
                    "quantity": rng.integers(0, 1000, n),
                    "active": np.where(rng.random(n) < 0.5, "true", "false"),
                    "created_at": np.char.add(np.datetime_as_string(ts, unit="s"), "Z"),
                    "day": np.datetime_as_string(ts, unit="D"),
                    "note": np.char.add("n", (ids % 997).astype(str)),
                }
            )
            frame.to_csv(f, header=start == 0, index=False, lineterminator="\n")


def psql_copy(url: str, path: Path) -> float:
    cols = ", ".join(f"{c} {PG_TYPES[k]}" + (" PRIMARY KEY" if c == "id" else "") for c, k in COLUMNS.items())
    subprocess.run(
        ["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE TABLE bench_copy ({cols})"], check=True
    )
    res = run_timed(
        [
            "psql",
            url,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"\\copy bench_copy FROM '{path}' WITH (FORMAT csv, HEADER true)",
        ]
    )
    if res["returncode"]:
        raise RuntimeError(res["output"])
    return res["wall_seconds"]


def write_sources(root: Path, chunk_rows: int | None) -> Path:
    import yaml

    spec = {"kind": "csv", "path": "drop/*.csv", "table": "bench", "primary_key": ["id"], "columns": COLUMNS}
    if chunk_rows:
        spec["chunk_rows"] = chunk_rows
    path = root / "sources.yaml"
    path.write_text(yaml.safe_dump({"bench": spec}, sort_keys=False))
    (root / "drop").mkdir(exist_ok=True)
    return path


def asset_runs(root: Path, csv: Path, url: str, label: str, rerun: bool) -> dict:
    """Empty drop folder, then the file, then (optionally) the unchanged file again; one Dagster home each."""
    home = dagster_home(root / label)
    sources = root / "sources.yaml"
    drop = root / "drop"
    for f in drop.iterdir():
        f.unlink()
    dagster_execute("ingest_bench", sources, home, url)  # creates the instance and the system tables: untimed
    empty = dagster_execute("ingest_bench", sources, home, url)
    os.link(csv, drop / csv.name)
    full = dagster_execute("ingest_bench", sources, home, url)
    out = {"empty": _strip(empty), "file": _strip(full), "file_metadata": latest_metadata(home, "bench")}
    if rerun:
        settle(url)
        again = dagster_execute("ingest_bench", sources, home, url)
        out["rerun"] = _strip(again)
        out["rerun_metadata"] = latest_metadata(home, "bench")
    return out


def settle(url: str) -> None:
    """Let the server finish the load's own background work (autovacuum's analyze of the new rows, the
    checkpoint of their WAL) before the rerun is timed: the empty run it is compared with met a quiet server."""
    if not url.startswith("postgresql"):
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE bench")
        conn.execute("CHECKPOINT")


def _strip(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "output"}


def dlt_merge(csv: Path, url: str) -> dict | None:
    py = os.environ.get("ETL_BENCH_DLT_PYTHON", "/tmp/dltvenv/bin/python")
    if not Path(py).exists():
        return None
    script = Path(__file__).with_name("_dlt_merge.py")
    res = run_timed([py, str(script), str(csv), url])
    if res["returncode"]:
        return {"error": res["output"][-2000:]}
    return {
        "wall_seconds": res["wall_seconds"],
        "peak_rss_mb": res["peak_rss_mb"],
        "version": res["output"].strip().splitlines()[-1],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--chunk-rows", type=int, default=None, help="the source's chunk_rows (default: the project's)"
    )
    ap.add_argument("--skip-copy", action="store_true", help="no psql \\copy (e.g. the memory check)")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--skip-dlt", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and databases")
    args = ap.parse_args()

    root = tempdir("etl-bench-csv-")
    csv = root / "bench.csv"
    t = time.perf_counter()
    generate(csv, args.rows)
    size_mb = csv.stat().st_size / 2**20
    print(
        f"generated {args.rows:,} rows, {size_mb:,.0f} MB in {time.perf_counter() - t:.1f}s: {csv}",
        flush=True,
    )
    from etl_assets.extract.csv import file_digest

    t = time.perf_counter()
    file_digest(csv)
    hash_seconds = time.perf_counter() - t

    result: dict = {
        "rows": args.rows,
        "size_mb": round(size_mb, 1),
        "hash_seconds": hash_seconds,
        "chunk_rows": args.chunk_rows,
        "pg_admin_url": PG_ADMIN_URL,
    }
    dbs = []
    try:
        write_sources(root, args.chunk_rows)
        if not args.skip_copy:
            name, url = create_db()
            dbs.append(name)
            result["psql_copy_seconds"] = psql_copy(url, csv)
            print(f"psql \\copy: {result['psql_copy_seconds']:.2f}s", flush=True)
        name, url = create_db()
        dbs.append(name)
        result["postgres"] = asset_runs(root, csv, url, "pg", rerun=True)
        print("asset on PostgreSQL: done", flush=True)
        if not args.skip_sqlite:
            result["sqlite"] = asset_runs(
                root, csv, f"sqlite:///{root / 'warehouse.db'}", "sqlite", rerun=False
            )
            print("asset on SQLite: done", flush=True)
        if not args.skip_dlt:
            name, url = create_db()
            dbs.append(name)
            result["dlt_merge"] = dlt_merge(csv, url)
    finally:
        if not args.keep:
            for name in dbs:
                drop_db(name)
            shutil.rmtree(root, ignore_errors=True)  # the CSV, both Dagster homes, the SQLite file

    n = args.rows
    rows_out = []
    copy_s = result.get("psql_copy_seconds")
    if copy_s:
        rows_out.append(("psql \\copy (fresh table, PK)", copy_s, n / copy_s, 1.0, None))
    pg = result["postgres"]
    pg_s = pg["file"]["wall_seconds"] - pg["empty"]["wall_seconds"]
    result["asset_pg_seconds"] = pg_s
    rows_out.append(
        (
            "CSV asset -> PostgreSQL (run - empty run)",
            pg_s,
            n / pg_s,
            (copy_s / pg_s) if copy_s else None,
            pg["file"]["peak_rss_mb"],
        )
    )
    rows_out.append(
        (
            "  dagster run on empty drop folder",
            pg["empty"]["wall_seconds"],
            None,
            None,
            pg["empty"]["peak_rss_mb"],
        )
    )
    rows_out.append(
        ("  dagster run on the file", pg["file"]["wall_seconds"], None, None, pg["file"]["peak_rss_mb"])
    )
    rerun_s = pg["rerun"]["wall_seconds"]
    rows_out.append(
        (
            f"  rerun, unchanged file (records_processed={pg['rerun_metadata'].get('records_processed')})",
            rerun_s,
            None,
            None,
            pg["rerun"]["peak_rss_mb"],
        )
    )
    rows_out.append(
        ("  empty run + hashing the file", pg["empty"]["wall_seconds"] + hash_seconds, None, None, None)
    )
    if "sqlite" in result:
        sq = result["sqlite"]
        sq_s = sq["file"]["wall_seconds"] - sq["empty"]["wall_seconds"]
        result["asset_sqlite_seconds"] = sq_s
        rows_out.append(
            (
                "CSV asset -> SQLite default (run - empty run)",
                sq_s,
                n / sq_s,
                (copy_s / sq_s) if copy_s else None,
                sq["file"]["peak_rss_mb"],
            )
        )
    d = result.get("dlt_merge")
    if d is None and not args.skip_dlt:
        print("\nnote: dlt not found in a side environment (ETL_BENCH_DLT_PYTHON); its row is skipped")
    elif d and "error" in d:
        print(f"\nnote: dlt failed: {d['error'][-500:]}")
    elif d:
        rows_out.append(
            (
                f"dlt {d['version']} merge on id (side venv)",
                d["wall_seconds"],
                n / d["wall_seconds"],
                (copy_s / d["wall_seconds"]) if copy_s else None,
                d["peak_rss_mb"],
            )
        )
    print_table(
        f"CSV load, {n:,} rows x 9 columns, {size_mb:,.0f} MB",
        rows_out,
        ("what", "seconds", "rows/s", "x psql \\copy", "peak RSS MB"),
    )
    print(f"\nfile metadata: {pg['file_metadata']}\nrerun metadata: {pg['rerun_metadata']}")
    if copy_s:  # the targets
        print(f"target: CSV asset -> PostgreSQL >= 0.70x psql \\copy (net of start-up): {copy_s / pg_s:.2f}x")
    if "asset_sqlite_seconds" in result:
        print(
            f"target: CSV asset -> SQLite >= 100,000 rows/s: {n / result['asset_sqlite_seconds']:,.0f} rows/s"
        )
    write_result("csv_load", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
