"""Fixtures: a PostgreSQL database of our own per test run, a loopback HTTP server, sources files on disk."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from etl_assets.config_load import load_sources
from etl_assets.warehouse import Warehouse

from .loopback import LoopbackServer

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
PG_ADMIN_URL = os.environ.get("ETL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


_PG_FIXTURES = {"pg_server", "pg_url", "pg_warehouse", "dagster_pg", "dagster_db", "instance"}
_E2E_FILES = {"test_stack_e2e.py", "test_dagster_cli.py", "test_secret_channels.py", "test_deploy_files.py"}
_SLOW_FILES = {
    "test_resilience.py",
    "test_stack_e2e.py",
    "test_observability.py",
    "test_secret_channels.py",
    "test_known_failures.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test uses: `make unit` runs `-m "not postgres and not e2e and not slow"`."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if names & _PG_FIXTURES or "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)
        if item.path.name in _E2E_FILES:
            item.add_marker(pytest.mark.e2e)
        if item.path.name in _SLOW_FILES:
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """Admin URL of a PostgreSQL server that answers; CI (ETL_REQUIRE_POSTGRES=1) fails instead of skipping."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("ETL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} (set ETL_TEST_PG_URL): {exc}")
    return PG_ADMIN_URL


def _create_db(admin: str) -> tuple[str, str]:
    name = f"etl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.rsplit("/", 1)[0] + "/" + name


def _drop_db(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: str):
    """A fresh database per test, dropped afterwards."""
    name, url = _create_db(pg_server)
    yield url
    _drop_db(pg_server, name)


def fresh_pg_warehouse(admin: str):
    """A Warehouse on a database of its own, dropped afterwards (a generator for fixtures)."""
    name, url = _create_db(admin)
    wh = Warehouse(url)
    yield wh
    wh.dispose()
    _drop_db(admin, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path: Path):
    """The same test on the SQLite default and on PostgreSQL."""
    if request.param == "sqlite":
        wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield wh
        wh.dispose()
    else:
        yield from fresh_pg_warehouse(request.getfixturevalue("pg_server"))


@pytest.fixture
def pg_warehouse(pg_url: str):
    wh = Warehouse(pg_url)
    yield wh
    wh.dispose()


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture
def make_sources(tmp_path: Path):
    """Write a sources file from a dict and load it; returns (path, specs)."""

    def make(sources: dict, name: str = "sources.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(sources, sort_keys=False), encoding="utf-8")
        return path, load_sources(path)

    return make


def corpus_dir(*parts: str) -> Path:
    """A folder of ../shared/corpus; skipped with the reason where a clone has no corpus beside it."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        if os.environ.get("ETL_REQUIRE_CORPUS") == "1":
            pytest.fail(f"corpus required (ETL_REQUIRE_CORPUS=1) but {path} is missing")
        pytest.skip(f"{path} not found: the corpus suite needs ../shared/corpus beside the clone")
    return path
