"""A Dagster instance of each kind the project ships: the embedded default and the production one."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from ..conftest import REPO, _create_db, _drop_db, free_port

LOCAL_YAML = REPO / "deploy" / "dagster.local.yaml"  # SQLite, run-sharded event log (make dev, make run)
PROD_YAML = REPO / "dagster.yaml"  # PostgreSQL storage from DAGSTER_PG_* variables


def pg_instance_env(url: str) -> dict[str, str]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "DAGSTER_PG_HOST": str(info.get("host", "127.0.0.1")),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": str(info.get("user", "postgres")),
        "DAGSTER_PG_PASSWORD": str(info.get("password", "")),
        "DAGSTER_PG_DB": str(info["dbname"]),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def dagster_instance(request, tmp_path: Path, monkeypatch) -> Iterator[DagsterInstance]:
    """The same test on the embedded default (exactly deploy/dagster.local.yaml: SQLite, an event log sharded per
    run) and on the production dagster.yaml (PostgreSQL storage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    name = None
    if request.param == "sqlite":
        shutil.copy(LOCAL_YAML, home / "dagster.yaml")
    else:
        admin = request.getfixturevalue("pg_server")
        name, url = _create_db(admin)
        for key, val in pg_instance_env(url).items():
            monkeypatch.setenv(key, val)
        shutil.copy(PROD_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = DagsterInstance.from_config(str(home))
    yield inst
    inst.dispose()
    if name:
        _drop_db(request.getfixturevalue("pg_server"), name)


class HttpApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread, for a real HTTP client."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._srv.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._srv.started:
            assert time.monotonic() < deadline, f"{self.base} did not come up within 15s"
            time.sleep(0.02)

    def close(self) -> None:
        self._srv.should_exit = True
        self._thread.join(10)
