"""The README's job commands print no SupersessionWarning: `make run`'s launcher, `dg launch`, and the documented
contract `dagster job execute -m etl_assets.definitions -j ingest_all` under the README's `PYTHONWARNINGS`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BIN = Path(sys.executable).parent
README = (REPO / "README.md").read_text(encoding="utf-8")
CONTRACT = "dagster job execute -m etl_assets.definitions -j ingest_all"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The embedded default (exactly deploy/dagster.local.yaml), a SQLite warehouse and one CSV source."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "items_1.csv").write_text("id,qty\n1,3\n2,4\n", encoding="utf-8")
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"items:\n  kind: csv\n  path: {tmp_path / 'drop'}/items_*.csv\n  primary_key: [id]\n")
    out = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(sources),
        "ETL_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
        "VIRTUAL_ENV": str(BIN.parent),
    }
    out.pop("PYTHONWARNINGS", None)
    return out


def _output(cmd: list[str], env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"{cmd}: rc {res.returncode}\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def test_readme_job_commands_print_no_supersession_warning(env):
    [filter_] = set(
        re.findall(r"^export PYTHONWARNINGS='([^']+)'", README, re.M)
    )  # one filter, as documented
    assert CONTRACT in README and "dg launch --job" in README
    assert "$(BIN)/python -m etl_assets.defs.launch ingest_all" in (REPO / "Makefile").read_text(
        encoding="utf-8"
    )
    contract = [str(BIN / "dagster"), *CONTRACT.split()[1:]]

    # without the filter Dagster warns: what the README's line is for (drop the line when this stops holding)
    assert "SupersessionWarning" in _output(contract, env)
    outputs = {
        "make run": _output([sys.executable, "-m", "etl_assets.defs.launch", "ingest_all"], env),
        CONTRACT: _output(contract, {**env, "PYTHONWARNINGS": filter_}),
        "dg launch": _output([str(BIN / "dg"), "launch", "--job", "ingest_all"], env),
    }
    for name, text in outputs.items():
        assert "SupersessionWarning" not in text and "Invalid -W option" not in text, (
            f"{name}:\n{text[-2000:]}"
        )
        assert re.search(r"source items: done: \d+ processed", text), f"{name} ran no ingest:\n{text[-2000:]}"
