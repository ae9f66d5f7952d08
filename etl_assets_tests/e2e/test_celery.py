"""ingest_all on two Celery workers (ETL_EXECUTOR=celery): separate processes sharing a PostgreSQL-backed
DAGSTER_HOME, the warehouse and the broker (RabbitMQ, ETL_CELERY_BROKER_URL or the local default).

Two ingest_all runs start together, each with a rate-limited API source (`paced`, its pool raised to two steps)
and a CSV source (`lines`, a pool of one). Both workers run steps; the two `paced` steps run at once on different
workers and the API still sees at most `calls` requests per window; the `lines` steps wait for each other.
"""

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance

from etl_assets.defs.executors import DEFAULT_BROKER, ExecutorConfigError, celery_config, executor_name
from etl_assets.defs.jobs import build_jobs

from ..conftest import REPO, _create_db, _drop_db
from ..loopback import LoopbackServer, Reply, Seen

BIN = Path(sys.executable).parent
BROKER = os.environ.get("ETL_CELERY_BROKER_URL") or DEFAULT_BROKER
PAGES, PAGE_SIZE, CALLS, PERIOD = 16, 10, 4, 1.0  # 2 runs x 16 requests at 4/s: about 8 s of shared limit
LINES, COMMIT_DELAY = 300, 1.5


def _broker_or_skip() -> None:
    url = urlsplit(BROKER)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 5672), timeout=3).close()
    except OSError as exc:
        msg = f"RabbitMQ not reachable at {url.hostname}:{url.port or 5672} ({exc}): start rabbitmq-server"
        if os.environ.get("ETL_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " (ETL_REQUIRE_TOOLS=1)")
        pytest.skip(msg)


@pytest.fixture
def dagster_pg(pg_server):
    name, url = _create_db(pg_server)
    yield url
    _drop_db(pg_server, name)


def _api() -> LoopbackServer:
    """Page-numbered records; every record served gets a new id, so two runs land disjoint keys."""
    srv, ids, lock = LoopbackServer(), itertools.count(1), threading.Lock()

    def page(seen: Seen) -> Reply:
        n = int(seen.query["page"])
        size = PAGE_SIZE if n < PAGES else PAGE_SIZE // 2  # the last page is short: pagination ends there
        with lock:
            rows = [{"id": next(ids), "page": n} for _ in range(size)]
        return Reply(body={"data": rows})

    srv.route("/paced", page)
    return srv


def _sources(tmp_path: Path, base: str) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    body = "".join(f"{i},line {i}\n" for i in range(1, LINES + 1))
    (drop / "lines_1.csv").write_text("line_id,text\n" + body, encoding="utf-8")
    sources = {
        "lines": {
            "kind": "csv",
            "path": str(drop / "lines_*.csv"),
            "table": "lines",
            "primary_key": ["line_id"],
            "columns": {"line_id": "integer", "text": "string"},
        },
        "paced": {
            "kind": "api",
            "url": f"{base}/paced",
            "records_path": "data",
            "pagination": {"type": "page", "page_param": "page", "size_param": "per_page", "size": PAGE_SIZE},
            "primary_key": ["id"],
            "rate_limit": {"calls": CALLS, "period_seconds": PERIOD},
        },
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(sources, sort_keys=False), encoding="utf-8")
    return path


def _env(home: Path, sources: Path, warehouse: str, dagster_pg: str, queue: str) -> dict[str, str]:
    info = psycopg.conninfo.conninfo_to_dict(dagster_pg)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(sources),
        "ETL_WAREHOUSE_URL": warehouse,
        "ETL_EXECUTOR": "celery",
        "ETL_CELERY_BROKER_URL": BROKER,
        "ETL_CELERY_QUEUE": queue,  # a queue of our own: no other worker on this broker takes our steps
        # a step holds its pool slot a while: the second run surely starts while the first run's `lines` runs
        "ETL_FAULTS": f"before_commit=delay({COMMIT_DELAY})",
        "DAGSTER_PG_HOST": str(info.get("host", "127.0.0.1")),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": str(info.get("user", "postgres")),
        "DAGSTER_PG_PASSWORD": str(info.get("password", "")),
        "DAGSTER_PG_DB": str(info["dbname"]),
    }


def _start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    queue = env["ETL_CELERY_QUEUE"]
    cmd = [str(BIN / "celery"), "-A", "etl_assets.defs.executors", "worker", "-Q", queue]
    cmd += ["-n", f"{name}.{queue}@%h", "--concurrency=1", "--prefetch-multiplier=1", "--without-mingle"]
    cmd += ["--without-gossip", "-l", "INFO"]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(workers: dict[str, subprocess.Popen], logs: dict[str, Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = set(workers)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            assert workers[name].poll() is None, logs[name].read_text()[-3000:]
            if " ready." in logs[name].read_text():
                pending.discard(name)
        time.sleep(0.2)
    assert not pending, f"workers not ready after {timeout} s: {sorted(pending)}"


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()  # a warm shutdown: the worker finishes its step (there is none left) and leaves
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _drop_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(BROKER, connect_timeout=5) as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def _steps(instance: DagsterInstance, run_id: str) -> dict[str, dict]:
    """Per step: when the run submitted it to the queue, its start and end (epoch seconds), the worker."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event, key = entry.dagster_event, entry.step_key
        if event is None or key is None:
            continue
        step = steps.setdefault(key, {})
        if event.event_type == DagsterEventType.STEP_START:
            step["start"] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            step["end"] = entry.timestamp
        elif event.event_type == DagsterEventType.ENGINE_EVENT:
            meta = event.engine_event_data.metadata
            if "Celery worker" in meta:
                step["worker"] = meta["Celery worker"].value.split(".")[0]  # w1.<queue>@<host>
            if (event.message or "").startswith("Submitting celery task"):
                step["submitted"] = entry.timestamp
    return steps


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_executor_comes_from_the_environment_and_the_broker_password_stays_in_it(monkeypatch):
    monkeypatch.delenv("ETL_EXECUTOR", raising=False)
    jobs = {j.name: j for j in build_jobs(["orders"])}
    assert jobs["ingest_orders"].executor_def.name == "in_process"
    monkeypatch.setenv("ETL_EXECUTOR", "Celery")
    monkeypatch.setenv("ETL_CELERY_BROKER_URL", "amqp://etl:s3cret@mq:5672//")
    monkeypatch.setenv("ETL_CELERY_QUEUE", "etl")
    jobs = {j.name: j for j in build_jobs(["orders"])}
    assert {jobs[n].executor_def.name for n in ("ingest_all", "ingest_orders")} == {"etl_celery"}
    config = celery_config()
    assert config["broker"] == {"env": "ETL_CELERY_BROKER_URL"} and "s3cret" not in repr(config)
    assert config["config_source"]["task_default_queue"] == "etl"
    monkeypatch.setenv("ETL_EXECUTOR", "k8s")
    with pytest.raises(ExecutorConfigError, match="ETL_EXECUTOR='k8s' is not an executor"):
        executor_name()


@pytest.mark.e2e
@pytest.mark.slow
def test_ingest_all_on_two_celery_workers_shares_the_rate_limit_and_the_pools(tmp_path, pg_url, dagster_pg):
    _broker_or_skip()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    srv = _api()
    queue = f"etl_test_{uuid.uuid4().hex[:10]}"
    env = _env(home, _sources(tmp_path, srv.base), pg_url, dagster_pg, queue)
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    workers: dict[str, subprocess.Popen] = {}
    try:
        # the instance's schema and the pool limits exist before any process uses them (see DESIGN)
        instance = DagsterInstance.from_config(str(home))
        instance.event_log_storage.set_concurrency_slots("etl/paced", 2)
        instance.event_log_storage.set_concurrency_slots("etl/lines", 1)
        logs = {n: tmp_path / f"{n}.log" for n in ("w1", "w2")}
        workers = {n: _start_worker(n, env, logs[n]) for n in logs}
        _wait_ready(workers, logs)
        cmd = [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_all"]
        runs = [
            subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        ]
        outputs = [r.communicate(timeout=180)[0].decode(errors="replace") for r in runs]
        for r, out in zip(runs, outputs, strict=True):
            assert r.returncode == 0, out[-4000:] + "".join(p.read_text()[-2000:] for p in logs.values())
        run_ids = [r.run_id for r in instance.get_runs()]
        steps = [_steps(instance, run_id) for run_id in run_ids]
    finally:
        _stop(list(workers.values()))
        srv.close()
        os.environ.clear()
        os.environ.update(saved)
        _drop_queue(queue)

    hits = srv.hits("/paced")
    with psycopg.connect(pg_url) as conn:
        paced = conn.execute("SELECT count(*), count(DISTINCT id) FROM paced").fetchone()
        lines = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
    served = sum(PAGE_SIZE if int(h.query["page"]) < PAGES else PAGE_SIZE // 2 for h in hits)
    assert served > PAGES * PAGE_SIZE  # both runs read pages
    assert paced == (served, served)  # every record of both runs landed once
    assert lines == LINES  # the file landed once: the second run found it loaded

    assert len(steps) == 2 and all(set(s) == {"paced", "lines"} for s in steps)
    ran = [s[k] for s in steps for k in ("paced", "lines")]
    assert {step["worker"] for step in ran} == {"w1", "w2"}  # both workers did steps

    # pool etl/paced admits two steps: they ran at once, on different workers, under one shared rate limit
    p1, p2 = steps[0]["paced"], steps[1]["paced"]
    assert p1["worker"] != p2["worker"] and _overlap(p1, p2), (p1, p2)
    times = sorted(h.at for h in hits)
    busiest = max(sum(1 for t in times if start <= t < start + PERIOD) for start in times)
    assert busiest <= CALLS, f"{busiest} requests within {PERIOD} s; the limit is {CALLS}"

    # pool etl/lines admits one step: the later run submitted its `paced` step at once, but held its `lines`
    # step back until the first run's had finished with the slot
    first, later = sorted(steps, key=lambda s: s["lines"]["start"])
    assert later["paced"]["submitted"] < first["lines"]["end"] <= later["lines"]["submitted"], (first, later)
    assert not _overlap(first["lines"], later["lines"])
