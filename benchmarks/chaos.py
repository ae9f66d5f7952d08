"""Chaos benchmark: kill -9 an ingest at random moments, rerun, count lost and duplicated rows; then the shared
rate limit under 4 concurrent processes.

    python benchmarks/chaos.py [--trials 100] [--rows 20000]     (PostgreSQL: ETL_BENCH_PG_URL, see _common.py)

Each trial: a fresh table, `etl-assets ingest` of a multi-batch CSV (no primary key: rows are keyed by their
position, so a batch read twice or skipped shows up as a duplicate or a loss), SIGKILL at a random moment, a
check that the checkpoint equals what landed, a rerun, and the count. Prints a table and writes
benchmarks/results/chaos.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import yaml
from _common import create_db, drop_db

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def kill_trials(trials: int, rows: int, seed: int, work: Path) -> dict:
    csv = work / "big.csv"
    with csv.open("w") as f:
        f.write("id,name,amount\n")
        f.writelines(f"{i},name {i},{i * 0.5}\n" for i in range(1, rows + 1))
    sources = work / "sources.yaml"
    sources.write_text(
        yaml.safe_dump(
            {
                "big": {
                    "kind": "csv",
                    "path": str(csv),
                    "chunk_rows": 1000,
                    "columns": {"id": "integer", "name": "string", "amount": "float"},
                }
            }
        )
    )
    name, url = create_db("etl_chaos")
    from etl_assets.warehouse import Warehouse

    Warehouse(url).dispose()  # the system tables exist before the first kill
    rng = random.Random(seed)
    cmd = [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", url]
    env = {**os.environ, "ETL_FAULTS": "before_commit=delay(0.03)", "LOG_LEVEL": "WARNING"}
    out = {
        "trials": 0,
        "killed_mid_load": 0,
        "checkpoint_mismatch": 0,
        "lost": 0,
        "duplicated": 0,
        "rows": rows,
    }
    try:
        for t in range(trials):
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("DROP TABLE IF EXISTS big")
                for table in ("etl_checkpoints", "etl_schemas", "etl_runs", "etl_quarantine"):
                    c.execute(f"DELETE FROM {table}")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.5, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with psycopg.connect(url) as c:
                landed = (
                    c.execute("SELECT count(*) FROM big").fetchone()[0]
                    if c.execute("SELECT to_regclass('big')").fetchone()[0]
                    else 0
                )
                cp = c.execute("SELECT position FROM etl_checkpoints WHERE source = 'big'").fetchone()
            done = next(iter(json.loads(cp[0])["files"].values()))["rows"] if cp else 0
            out["checkpoint_mismatch"] += int(done != landed)
            out["killed_mid_load"] += int(0 < landed < rows)
            rerun = subprocess.run(cmd, env={**env, "ETL_FAULTS": ""}, capture_output=True, text=True)
            if rerun.returncode:
                raise SystemExit(f"trial {t}: rerun failed: {rerun.stderr[-500:]}")
            with psycopg.connect(url) as c:
                total, distinct = c.execute("SELECT count(*), count(DISTINCT id) FROM big").fetchone()
            out["lost"] += rows - distinct
            out["duplicated"] += total - distinct
            out["trials"] += 1
            print(
                f"  trial {t + 1:3d}: killed with {landed:6d} rows landed, checkpoint {done:6d}; "
                f"after rerun {total} rows, {distinct} distinct",
                flush=True,
            )
    finally:
        drop_db(name)
    return out


def rate_limit_trial(calls: int, period: float, processes: int, work: Path) -> dict:
    times: list[float] = []
    items = [{"id": i} for i in range(1, 201)]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            times.append(time.monotonic())
            page = int(self.path.split("page=")[1].split("&")[0])
            body = json.dumps(items[(page - 1) * 10 : page * 10]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sources = work / "api.yaml"
    sources.write_text(
        yaml.safe_dump(
            {
                "api": {
                    "kind": "api",
                    "url": f"http://127.0.0.1:{srv.server_address[1]}/items",
                    "primary_key": ["id"],
                    "pagination": {"type": "page", "size": 10},
                    "rate_limit": {"calls": calls, "period_seconds": period},
                }
            }
        )
    )
    name, url = create_db("etl_chaos")
    try:  # the processes ingest the same source, so they draw from its one budget
        procs = [
            subprocess.Popen(
                [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        for p in procs:
            p.wait()
    finally:
        srv.shutdown()
        drop_db(name)
    times.sort()
    worst = max(sum(1 for u in times if t <= u < t + period) for t in times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    return {
        "requests": len(times),
        "calls": calls,
        "period_seconds": period,
        "processes": processes,
        "max_in_any_window": worst,
        "achieved_per_second": round(rate, 2),
        "fraction_of_limit": round(rate / (calls / period), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = ROOT / "results" / "chaos-work"
    work.mkdir(parents=True, exist_ok=True)
    print(f"kill -9 trials: {args.trials} x {args.rows} rows")
    kills = kill_trials(args.trials, args.rows, args.seed, work)
    print("rate limit: 4 processes, 10 calls per 1 s")
    rate = rate_limit_trial(10, 1.0, 4, work)
    print()
    print(f"{'trials':>8} {'mid-load':>9} {'cp!=rows':>9} {'lost':>6} {'duplicated':>11}")
    print(
        f"{kills['trials']:>8} {kills['killed_mid_load']:>9} {kills['checkpoint_mismatch']:>9} {kills['lost']:>6} "
        f"{kills['duplicated']:>11}"
    )
    print(
        f"rate limit: {rate['requests']} requests, at most {rate['max_in_any_window']} in any "
        f"{rate['period_seconds']}s window (limit {rate['calls']}), {rate['achieved_per_second']}/s = "
        f"{rate['fraction_of_limit']:.1%} of the limit"
    )
    (ROOT / "results" / "chaos.json").write_text(json.dumps({"kill": kills, "rate_limit": rate}, indent=2))
    ok = (
        kills["lost"] == kills["duplicated"] == kills["checkpoint_mismatch"] == 0
        and rate["max_in_any_window"] <= rate["calls"]
        and rate["fraction_of_limit"] >= 0.9
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
