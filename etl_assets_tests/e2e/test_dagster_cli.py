"""The real `dagster job execute` CLI, with Dagster's own storage in PostgreSQL (the production dagster.yaml)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from etl_assets.demo_api import serve

from ..conftest import REPO, _create_db, _drop_db

DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def dagster_pg(pg_server):
    name, url = _create_db(pg_server)
    yield url
    _drop_db(pg_server, name)


def test_job_execute_with_postgres_storage_lands_rows_and_reruns_insert_nothing(tmp_path, pg_url, dagster_pg):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    info = psycopg.conninfo.conninfo_to_dict(dagster_pg)
    api = serve("127.0.0.1", 0)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(REPO / "sources.yaml"),
        "ETL_WAREHOUSE_URL": pg_url,
        "ETL_DEMO_API_URL": f"http://127.0.0.1:{api.server_address[1]}",
        "DAGSTER_PG_HOST": info.get("host", "127.0.0.1"),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": info.get("user", "postgres"),
        "DAGSTER_PG_PASSWORD": info.get("password", ""),
        "DAGSTER_PG_DB": info["dbname"],
    }
    try:
        for _attempt in (1, 2):
            res = subprocess.run(
                [DAGSTER, "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_all"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finally:
        api.shutdown()
    with psycopg.connect(pg_url) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("orders", "customers", "events", "releases")
        }
        second = conn.execute(
            "SELECT source, records_inserted, records_updated FROM etl_runs WHERE run_id = "
            "(SELECT run_id FROM etl_runs ORDER BY started_at DESC LIMIT 1) ORDER BY source"
        ).fetchall()
    assert counts == {"orders": 199, "customers": 60, "events": 90, "releases": 12}
    assert second == [("customers", 0, 0), ("events", 0, 0), ("orders", 0, 0), ("releases", 0, 0)]
    with psycopg.connect(dagster_pg) as conn:  # Dagster's runs and events live in PostgreSQL
        statuses = [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY create_timestamp")]
        materializations = conn.execute(  # a run's own (no partition), and one per file it loaded (README)
            "SELECT count(*) FILTER (WHERE partition IS NULL), count(*) FILTER (WHERE partition IS NOT NULL) "
            "FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchone()
    assert statuses == ["SUCCESS", "SUCCESS"]
    assert materializations == (8, 2)  # 2 runs x 4 sources; the first run's 2 orders files


def _local_env(tmp_path: Path) -> dict[str, str]:
    """The embedded default (exactly deploy/dagster.local.yaml), a SQLite warehouse and one CSV source."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "items_1.csv").write_text("id,qty\n1,3\n2,4\n", encoding="utf-8")
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"items:\n  kind: csv\n  path: {tmp_path / 'drop'}/items_*.csv\n  primary_key: [id]\n")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(sources),
        "ETL_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
    }


def test_dg_check_defs_passes_without_supersession_warnings(tmp_path):
    dg = str(Path(sys.executable).with_name("dg"))
    out = subprocess.run(
        [dg, "check", "defs"], cwd=REPO, env=_local_env(tmp_path), capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr
    assert "SupersessionWarning" not in out.stdout + out.stderr


def test_make_runs_launcher_attaches_the_run_to_the_code_location_with_source_tags(tmp_path):
    """What `make run` runs: the run is in the job's history in the UI (filtered by the code location's repository
    label, as the job page does) and carries etl/source."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    env = _local_env(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "etl_assets.defs.launch", "ingest_all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SupersessionWarning" not in out.stdout + out.stderr
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        label = {".dagster/repository": "__repository__@etl_assets"}
        [run] = instance.get_runs(RunsFilter(job_name="ingest_all", tags=label))
        assert run.status == DagsterRunStatus.SUCCESS and run.remote_job_origin is not None
        assert run.tags["etl/source"] == "all"
