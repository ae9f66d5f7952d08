"""The fixed cost of a run is mostly imports: loading the definitions, and a rerun on unchanged files, import none
of the typing stack (pandas, pyarrow, numpy) nor what only other source kinds or warehouses use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

HEAVY = ("pandas", "pyarrow", "numpy", "requests", "psycopg", "rapidfuzz", "prometheus_client", "feedparser")


def _imported(code: str, tmp_path: Path) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "ETL_SOURCES": str(tmp_path / "sources.yaml")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's printed list


def test_definitions_and_an_unchanged_rerun_import_no_typing_stack(tmp_path):
    (tmp_path / "tiny.csv").write_text("id,v\n1,a\n2,b\n")
    spec = {"kind": "csv", "path": str(tmp_path / "tiny.csv"), "primary_key": ["id"]}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"tiny": spec}))
    assert _imported("import etl_assets.definitions", tmp_path) == []
    run = (
        "from etl_assets.config_load import load_sources\nfrom etl_assets.pipeline import ingest\n"
        "from etl_assets.warehouse import Warehouse\n"
        f"wh = Warehouse('sqlite:///{tmp_path / 'wh.db'}')\n"
        "stats = ingest(load_sources('sources.yaml')['tiny'], wh, 'r{n}')\n"
        "assert stats.processed == {rows}, stats.processed"
    )
    # the first run reads and types the rows: pandas and pyarrow come with its first batch
    assert {"pandas", "pyarrow"} <= set(_imported(run.format(n=1, rows=2), tmp_path))
    # the rerun finds the file unchanged and reads nothing: none of it is imported
    assert _imported(run.format(n=2, rows=0), tmp_path) == []
