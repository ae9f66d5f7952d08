"""The CSV asset against its peers, on one generated file, in one run, into keyed tables of one database.

    python benchmarks/peers.py                  # 3M rows x 9 columns (about 280 MB)
    python benchmarks/peers.py --rows 100000    # a quick run

Loaders, in this order, each into its own table with a primary key on `id`:
  - `psql \\copy` into a fresh keyed table: the physical limit every ratio is measured against;
  - our CSV asset through `dagster job execute` (wall, and net of a run on an empty drop folder);
  - Sling (PyPI `sling` + `sling-linux-amd64`, whose binary is run directly) full-refresh with the primary key,
    and incremental (upsert) on the primary key into the pre-created table;
  - dlt (`dlt[postgres]`) merge on `id` (benchmarks/_dlt_merge.py);
  - Debian's `pgloader`, when installed, into the pre-created table.
Sling and dlt live in side virtual environments created on first use under ETL_BENCH_CACHE (default
~/.cache/etl-assets-bench); none of them is a dependency of the project. Each loader's row count is checked
after its load, and the server is checkpointed between loaders so none pays for the WAL of the one before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import create_db, drop_db, print_table, run_timed, tempdir, write_result  # noqa: E402
from csv_load import COLUMNS, PG_TYPES, asset_runs, generate, psql_copy, write_sources  # noqa: E402

CACHE = Path(os.environ.get("ETL_BENCH_CACHE", "~/.cache/etl-assets-bench")).expanduser()
SIDE_PACKAGES = {
    "sling": ["sling", "sling-linux-amd64"],
    "dlt": ["dlt[postgres,parquet]"],
}  # parquet: pyarrow


def side_python(name: str) -> Path | None:
    """The Python of a side environment with the peer's packages, created on first use; None with a note."""
    venv = CACHE / name
    py, done, wanted = venv / "bin" / "python", venv / ".installed", " ".join(SIDE_PACKAGES[name])
    if done.exists() and done.read_text() == wanted:
        return py
    print(f"creating the side environment {venv} ({' '.join(SIDE_PACKAGES[name])})", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *SIDE_PACKAGES[name]], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        print(f"note: {name}: side environment failed: {(exc.stderr or '').strip()[-300:]}", flush=True)
        return None
    done.write_text(wanted)
    return py


def keyed_table(url: str, table: str) -> None:
    cols = ", ".join(f"{c} {PG_TYPES[k]}" + (" PRIMARY KEY" if c == "id" else "") for c, k in COLUMNS.items())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({cols})")


def checked(url: str, table: str, rows: int, res: dict) -> dict:
    """The loader's result, with an error unless it exited 0 and the table holds exactly `rows` keyed rows."""
    out = {k: v for k, v in res.items() if k != "output"}
    if res["returncode"]:
        return {**out, "error": res["output"][-1500:]}
    with psycopg.connect(url) as conn:
        n, keys = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
        pk = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indisprimary AND indrelid = %s::regclass", (table,)
        ).fetchone()[0]
    if (n, keys) != (rows, rows):
        return {**out, "error": f"{table}: {n} rows, {keys} keys after the load; expected {rows}"}
    return {**out, "keyed": bool(pk)}


def settle(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def sling_binary(py: Path) -> Path:
    code = "import pathlib, sling_linux_amd64 as s; print(pathlib.Path(s.__file__).parent / 'bin')"
    folder = Path(
        subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    )
    return folder / "sling-linux-amd64"


def sling(binary: Path, csv: Path, url: str, table: str, mode: str) -> dict:
    env = {
        **os.environ,
        "BENCH_PG": url + ("&" if "?" in url else "?") + "sslmode=disable",
        "SLING_HOME_DIR": str(CACHE / "sling-home"),
        "SLING_DISABLE_TELEMETRY": "true",  # no network here: never wait for it
    }
    cmd = [str(binary), "run", "--src-stream", f"file://{csv}", "--tgt-conn", "BENCH_PG"]
    cmd += ["--tgt-object", f"public.{table}", "--mode", mode, "--primary-key", "id"]
    cmd += ["--src-options", json.dumps({"header": True, "delimiter": ","})]
    if mode == "full-refresh":  # Sling creates this table: give it the key
        cmd += ["--tgt-options", json.dumps({"table_keys": {"primary": ["id"]}})]
    return run_timed(cmd, env=env)


def pgloader(csv: Path, url: str, table: str, root: Path) -> dict:
    names = ", ".join(COLUMNS)
    load = root / f"{table}.load"
    load.write_text(
        f"LOAD CSV FROM '{csv}' ({names})\n"
        f"  INTO {url}?{table} ({names})\n"
        "  WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '\"';\n"
    )
    return run_timed(["pgloader", "--quiet", str(load)], cwd=root)


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    words = [w.strip('"') for w in out.split()]
    return next((w for w in words if w[:1].isdigit()), "?")


def run_all(args: argparse.Namespace, root: Path, csv: Path, url: str) -> dict:
    rows, out = args.rows, {}
    out["psql_copy"] = {"wall_seconds": psql_copy(url, csv)}  # also warms the page cache for every loader
    print(f"psql \\copy: {out['psql_copy']['wall_seconds']:.1f}s", flush=True)
    settle(url)
    write_sources(root, None)
    asset = asset_runs(root, csv, url, "pg", rerun=False)
    out["asset"] = checked(url, "bench", rows, {"returncode": 0, "output": ""}) | asset
    if "error" in out["asset"]:
        raise RuntimeError(out["asset"]["error"])
    print(f"our CSV asset: {asset['file']['wall_seconds']:.1f}s wall", flush=True)
    settle(url)
    if "sling" not in args.skip and (py := side_python("sling")):
        binary = sling_binary(py)
        out["sling_version"] = version([str(binary), "--version"])
        res = sling(binary, csv, url, "bench_sling_full", "full-refresh")
        out["sling_full_refresh"] = checked(url, "bench_sling_full", rows, res)
        settle(url)
        keyed_table(url, "bench_sling_upsert")
        res = sling(binary, csv, url, "bench_sling_upsert", "incremental")
        out["sling_incremental"] = checked(url, "bench_sling_upsert", rows, res)
        print("sling: done", flush=True)
        settle(url)
    if "dlt" not in args.skip and (py := side_python("dlt")):
        res = run_timed([str(py), str(Path(__file__).with_name("_dlt_merge.py")), str(csv), url])
        out["dlt_merge"] = checked(url, "bench.bench_dlt", rows, res)
        out["dlt_version"] = res["output"].strip().splitlines()[-1] if not res["returncode"] else "?"
        print("dlt: done", flush=True)
        settle(url)
    if "pgloader" not in args.skip and shutil.which("pgloader"):
        out["pgloader_version"] = version(["pgloader", "--version"])
        keyed_table(url, "bench_pgloader")
        out["pgloader"] = checked(url, "bench_pgloader", rows, pgloader(csv, url, "bench_pgloader", root))
        print("pgloader: done", flush=True)
    return out


def table(result: dict) -> list[tuple]:
    """(loader, seconds, rows/s, x psql \\copy, peak RSS MB) per loader that finished."""
    n, res = result["rows"], result["loaders"]
    copy_s = res["psql_copy"]["wall_seconds"]
    asset = res["asset"]
    net = asset["file"]["wall_seconds"] - asset["empty"]["wall_seconds"]
    lines = [
        ("psql \\copy into the keyed table", copy_s, None),
        ("our CSV asset, net of Dagster start-up", net, asset["file"]["peak_rss_mb"]),
        (
            "our CSV asset, wall (dagster job execute)",
            asset["file"]["wall_seconds"],
            asset["file"]["peak_rss_mb"],
        ),
    ]
    peers = [
        ("sling_full_refresh", f"Sling {res.get('sling_version')} full-refresh, primary key"),
        ("sling_incremental", f"Sling {res.get('sling_version')} incremental (upsert on the key)"),
        ("dlt_merge", f"dlt {res.get('dlt_version')} merge on the key"),
        ("pgloader", f"pgloader {res.get('pgloader_version')} into the keyed table"),
    ]
    for key, label in peers:
        r = res.get(key)
        if r and "error" not in r:
            lines.append((label, r["wall_seconds"], r.get("peak_rss_mb")))
        elif r:
            print(f"note: {label}: {r['error'][-600:]}")
    return [(label, s, n / s, copy_s / s, rss) for label, s, rss in lines]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--skip", action="append", default=[], choices=["sling", "dlt", "pgloader"])
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and the database")
    args = ap.parse_args()

    root = tempdir("etl-bench-peers-")
    csv = root / "bench.csv"
    generate(csv, args.rows)
    size_mb = csv.stat().st_size / 2**20
    print(f"generated {args.rows:,} rows x 9 columns, {size_mb:,.0f} MB: {csv}", flush=True)
    name, url = create_db("etl_bench_peers")
    try:
        result = {"rows": args.rows, "size_mb": round(size_mb, 1), "loaders": run_all(args, root, csv, url)}
    finally:
        if not args.keep:
            drop_db(name)
            shutil.rmtree(root, ignore_errors=True)
    rows = table(result)
    ours = rows[1][1]
    peer_rows = rows[3:]
    if peer_rows:
        fastest = min(peer_rows, key=lambda r: r[1])
        result["fastest_peer"] = {"loader": fastest[0], "seconds": fastest[1]}
        result["ours_vs_fastest_peer"] = fastest[1] / ours
    result["table"] = [
        dict(zip(("loader", "seconds", "rows_per_s", "x_copy", "peak_rss_mb"), r, strict=True)) for r in rows
    ]
    print_table(
        f"CSV load, {args.rows:,} rows x 9 columns, {size_mb:,.0f} MB, keyed tables, one database",
        rows,
        ("loader", "seconds", "rows/s", "x psql \\copy", "peak RSS MB"),
    )
    if peer_rows:
        print(f"\nours (net) vs the fastest peer ({fastest[0]}): {fastest[1] / ours:.2f}x faster")
    write_result("peers", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
