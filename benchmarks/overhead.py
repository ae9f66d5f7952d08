"""Fixed start-up cost: `dagster job execute` of a tiny CSV source (3 rows) vs a trivial one-asset Dagster job
(`_trivial_job.py`, in-process, the same instance) and the core ingest loop alone (`etl-assets ingest`):
`ingest_tiny` (in-process executor, the default of every ingest_<source> job) and `ingest_all` (multiprocess
executor: a step process per source), and the import time of our package vs Dagster's. `ingest_tiny` runs twice
per round: on the unchanged file (a rerun: nothing to read, so pandas and pyarrow are never imported) and on a
new version of it (3 rows read, typed and upserted).

    python benchmarks/overhead.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, dagster_home, print_table, run_timed, tempdir, write_result  # noqa: E402

TRIVIAL = "dagster job execute -j trivial (one asset returning 1, in-process)"
INGEST_TINY = "dagster job execute -j ingest_tiny (in-process executor), the file unchanged"
NEW_FILE = "dagster job execute -j ingest_tiny, a new version of the 3-row file"


def import_seconds(module: str, env: dict, cwd: Path) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=cwd
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import yaml

    root = tempdir("etl-bench-overhead-")
    (root / "tiny.csv").write_text("id,v\n1,a\n2,b\n3,c\n")
    sources = root / "sources.yaml"
    sources.write_text(yaml.safe_dump({"tiny": {"kind": "csv", "path": "tiny.csv", "primary_key": ["id"]}}))
    home = dagster_home(root)
    env = {
        **os.environ,
        "ETL_SOURCES": str(sources),
        "DAGSTER_HOME": str(home),
        "ETL_WAREHOUSE_URL": f"sqlite:///{root / 'warehouse.db'}",
    }
    job = [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_tiny"]
    trivial = [str(BIN / "dagster"), "job", "execute", "-f", str(Path(__file__).with_name("_trivial_job.py"))]
    commands = {
        TRIVIAL: [*trivial, "-j", "trivial"],
        "etl-assets ingest (core loop, no Dagster)": [
            str(BIN / "etl-assets"),
            "ingest",
            "--sources",
            str(sources),
        ],
        INGEST_TINY: job,
        NEW_FILE: job,
        "dagster job execute -j ingest_all (multiprocess executor)": [*job[:-1], "ingest_all"],
    }
    for cmd in (job, commands[TRIVIAL]):  # creates the instance and its tables, warms the disk cache: untimed
        subprocess.run(cmd, env=env, cwd=root, capture_output=True, check=True)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for i in range(args.repeat):
        for name, cmd in commands.items():
            if name == NEW_FILE:  # a new version of the file: its 3 rows are read, typed and upserted
                (root / "tiny.csv").write_text(f"id,v\n1,a{i}\n2,b{i}\n3,c{i}\n")
            res = run_timed(cmd, env=env, cwd=root)
            if res["returncode"]:
                raise RuntimeError(res["output"][-3000:])
            times[name].append(res["wall_seconds"])
    imports = {
        m: import_seconds(m, env, root)
        for m in ("pandas", "sqlalchemy", "dagster", "etl_assets.pipeline", "etl_assets.definitions")
    }
    medians = {k: statistics.median(v) for k, v in times.items()}
    rows = [(k, medians[k], min(v), medians[k] / medians[TRIVIAL]) for k, v in times.items()]
    rows += [(f"import {m}", s, None, None) for m, s in imports.items()]
    print_table(
        f"Fixed cost, tiny source (median of {args.repeat})",
        rows,
        ("what", "median s", "min s", "x trivial job"),
    )
    ratio, loading = medians[INGEST_TINY] / medians[TRIVIAL], medians[NEW_FILE] / medians[TRIVIAL]
    print(
        f"\ningest_tiny / trivial job (target <= 1.3x): {ratio:.2f}x unchanged file, {loading:.2f}x new file"
    )
    write_result(
        "overhead",
        {
            "runs": times,
            "imports": imports,
            "ingest_tiny_over_trivial": ratio,
            "new_file_over_trivial": loading,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
