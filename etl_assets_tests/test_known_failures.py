"""Known failures end with one line and exit 1: a source another run holds, a warehouse unreachable or dropped
mid-run, /stats without its database; a run killed with SIGKILL is marked abandoned by the source's next run."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from etl_assets.observability.facts import warehouse_facts
from etl_assets.serve import Observer, create_app
from etl_assets.warehouse import Warehouse

from .conftest import _create_db, _drop_db, free_port
from .loopback import Reply

BIN = Path(sys.executable).parent
ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 61)]


def _pages(req):
    page = int(req.query.get("page", "1"))
    return Reply(body=ITEMS[(page - 1) * 10 : page * 10])


def _sources(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "items": {
                    "kind": "api",
                    "url": url,
                    "primary_key": ["id"],
                    "batch_rows": 10,
                    "pagination": {"type": "page", "size": 10},
                }
            }
        )
    )
    return path


def _ingest(sources: Path, url: str, faults: str | None = None, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ETL_FAULTS"}
    if faults:
        env["ETL_FAULTS"] = faults
    return subprocess.Popen(
        [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def _one_line(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if ln.startswith("source '")]
    assert not any(ln.startswith("Traceback") for ln in text.splitlines()), text
    return lines


@pytest.fixture(params=["sqlite", "postgresql"])
def wh_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wh.db'}"
        return
    name, url = _create_db(request.getfixturevalue("pg_server"))
    yield url
    _drop_db(request.getfixturevalue("pg_server"), name)


def test_two_runs_of_one_source_at_once_lose_nothing_and_fail_in_one_line(tmp_path, server, wh_url):
    """Runs of one source may overlap (they share its rate limit and checkpoint). When both land the same keys at
    the same instant (PostgreSQL: the second INSERT waits on the first's uncommitted keys), one transaction fails:
    with one line saying so, and what it did not land the other did."""
    sources = _sources(tmp_path, server.route("/items", _pages))
    env = {k: v for k, v in os.environ.items() if k != "ETL_FAULTS"}
    slow = {**env, "ETL_FAULTS": "before_commit=delay(0.5)"}
    procs = [
        subprocess.Popen(
            [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", wh_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=e,
        )
        for e in (slow, env)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    for code, err in results:
        lines = _one_line(err)
        assert code == 0 or (
            code == 1 and len(lines) == 1 and "landed the same keys at the same moment" in lines[0]
        ), err
    assert any(code == 0 for code, _ in results)
    engine = sa.create_engine(wh_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM items")).one() == (60, 60)
        statuses = sorted(r[0] for r in conn.execute(sa.text("SELECT status FROM etl_runs")))
    engine.dispose()
    assert statuses == sorted("success" if code == 0 else "failure" for code, _ in results)


def test_a_killed_run_is_marked_abandoned_by_the_next_and_counted(tmp_path, server, wh_url):
    sources = _sources(tmp_path, server.route("/items", _pages))
    crashed = _ingest(sources, wh_url, faults="after_batch_read=crash@nth=3")
    crashed.communicate(timeout=120)
    assert crashed.returncode == -signal.SIGKILL
    engine = sa.create_engine(wh_url)
    with engine.connect() as conn:
        assert [r[0] for r in conn.execute(sa.text("SELECT status FROM etl_runs"))] == ["started"]
    done = _ingest(sources, wh_url)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "marked abandoned" in err
    with engine.connect() as conn:
        statuses = sorted(r[0] for r in conn.execute(sa.text("SELECT status FROM etl_runs")))
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM items")).one() == (60, 60)
    engine.dispose()
    assert statuses == ["abandoned", "success"]
    wh = Warehouse(wh_url)
    facts = warehouse_facts(wh)
    wh.dispose()
    assert facts.runs_by_type == {("api", "abandoned"): 1, ("api", "success"): 1}


def test_an_unreachable_warehouse_is_one_line(tmp_path, server):
    sources = _sources(tmp_path, server.route("/items", _pages))
    res = subprocess.run(
        [
            str(BIN / "etl-assets"),
            "ingest",
            "--sources",
            str(sources),
            "--url",
            "postgresql://postgres:hunter2-pw@127.0.0.1:1/nowhere",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    lines = _one_line(res.stderr)
    assert len(lines) == 1 and "check ETL_WAREHOUSE_URL" in lines[0] and "hunter2-pw" not in res.stderr


def test_a_warehouse_dropped_mid_run_is_one_line(tmp_path, server, pg_server):
    sources = _sources(tmp_path, server.route("/items", _pages))
    name, url = _create_db(pg_server)
    try:
        run = _ingest(sources, url, faults="before_commit=delay(0.4)")
        deadline = time.monotonic() + 60
        while len(server.hits("/items")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        _drop_db(pg_server, name)
        out, err = run.communicate(timeout=120)
    finally:
        _drop_db(pg_server, name)
    assert run.returncode == 1, err
    lines = _one_line(err)
    assert lines and all(len(ln) < 600 for ln in lines), err
    assert any("warehouse" in ln and "fix:" in ln for ln in lines), err


def test_stats_without_its_database_answers_503_with_the_reason():
    import uvicorn

    app = create_app(Observer("postgresql://postgres@127.0.0.1:1/nowhere", instance=object(), sources=dict))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30)
            except urllib.error.HTTPError as exc:
                status, body = exc.code, json.loads(exc.read())
                break
            except OSError:
                time.sleep(0.05)
    finally:
        srv.should_exit = True
    assert status == 503 and body["status"] == "unavailable" and "warehouse unavailable" in body["error"]
