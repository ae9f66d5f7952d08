"""Shared helpers of the benchmark scripts (not tests): timed subprocesses with peak RSS, PostgreSQL databases,
Dagster homes, result tables and JSON."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("ETL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def machine() -> dict:
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = ""
    try:
        with psycopg.connect(PG_ADMIN_URL) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": pg,
        "platform": platform.platform(),
    }


def run_timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None, poll: float = 0.02) -> dict:
    """Run a command; wall time, exit code, output, and peak RSS (largest single process of its tree, and the
    tree's largest sum), polled with psutil."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out_chunks: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    peak_one = peak_tree = 0
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        root = None
    while proc.poll() is None:
        if root is not None:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            if rss:
                peak_one, peak_tree = max(peak_one, max(rss)), max(peak_tree, sum(rss))
        time.sleep(poll)
    wall = time.perf_counter() - started
    reader.join()
    return {
        "wall_seconds": wall,
        "returncode": proc.returncode,
        "output": "".join(out_chunks),
        "peak_rss_mb": round(peak_one / 2**20, 1),
        "peak_rss_tree_mb": round(peak_tree / 2**20, 1),
    }


def create_db(prefix: str = "etl_bench") -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_db(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed_ingest(spec, root: Path, run_id: str, pg: bool) -> tuple:
    """One pass of the core loop into SQLite under `root` or a fresh PostgreSQL database: (stats, wall seconds)."""
    from etl_assets.pipeline import ingest
    from etl_assets.warehouse import Warehouse

    db, url = create_db() if pg else (None, f"sqlite:///{root / 'warehouse.db'}")
    try:
        wh = Warehouse(url)
        t = time.perf_counter()
        stats = ingest(spec, wh, run_id)
        wall = time.perf_counter() - t
        wh.dispose()
    finally:
        if db:
            drop_db(db)
    return stats, wall


def dagster_home(root: Path) -> Path:
    """A local Dagster instance (SQLite storage, as `make run`), created once before any timed run."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    return home


def dagster_execute(
    job: str, sources: Path, home: Path, warehouse_url: str, extra_env: dict | None = None
) -> dict:
    env = {
        **os.environ,
        "ETL_SOURCES": str(sources),
        "DAGSTER_HOME": str(home),
        "ETL_WAREHOUSE_URL": warehouse_url,
        **(extra_env or {}),
    }
    res = run_timed(
        [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", job],
        env=env,
        cwd=sources.parent,
    )
    if res["returncode"] != 0:
        raise RuntimeError(f"dagster job execute -j {job} failed:\n{res['output'][-4000:]}")
    return res


def latest_metadata(home: Path, asset: str) -> dict:
    """The metadata of the asset's latest materialization, read from the Dagster instance."""
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    try:
        ev = instance.get_latest_materialization_event(AssetKey(asset))
        md = ev.asset_materialization.metadata if ev else {}
        return {
            k: getattr(v, "value", v)
            for k, v in md.items()
            if k.startswith("records_") or k in ("batches", "duration_seconds")
        }
    finally:
        instance.dispose()


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def print_table(title: str, rows: list[tuple], headers: tuple) -> None:
    cells = [tuple(str(c) for c in headers)] + [tuple(_fmt(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for j, r in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nresults: {path}")
    return path
