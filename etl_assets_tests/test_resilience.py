"""Resilience: a rate limit shared by processes, pools, exactly-once under kill -9 and injected faults,
a dropped database connection, a flaky HTTP source, hostile input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import materialize

from etl_assets.config import ApiSource, CsvSource, RssSource
from etl_assets.defs import build_definitions
from etl_assets.defs.resources import WarehouseResource
from etl_assets.errors import SourceError
from etl_assets.faults import POINTS, Faults
from etl_assets.pipeline import ingest
from etl_assets.warehouse import Warehouse

from .conftest import REPO, _create_db, _drop_db
from .loopback import Reply

BIN = Path(sys.executable).parent
ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 101)]


def pages_route(size=10, delay=0.0):
    def route(req):
        if delay:
            time.sleep(delay)
        page = int(req.query.get("page", "1"))
        return Reply(body=ITEMS[(page - 1) * size : page * size])

    return route


def write_sources(tmp_path: Path, sources: dict) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(sources, sort_keys=False))
    return path


def cli_ingest(
    sources: Path, url: str, *names: str, env: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "etl-assets"), "ingest", *names, "--sources", str(sources), "--url", url],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kw,
    )


def table_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


# -- fault rules ------------------------------------------------------------------------------------------------


def test_fault_rules_parse_and_fire_by_nth_and_probability():
    f = Faults("after_commit=raise@nth=3; seed=1")
    f.hit("after_commit")
    f.hit("after_commit")
    with pytest.raises(RuntimeError, match="injected fault at after_commit"):
        f.hit("after_commit")
    f.hit("after_commit")  # only the third
    fired = 0
    g = Faults("before_request=http_error(503)@p=0.25; seed=42")
    for _ in range(400):
        try:
            g.hit("before_request")
        except RuntimeError:
            fired += 1
    assert 60 < fired < 140
    with pytest.raises(ValueError, match="cannot read rule 'nowhere=crash'"):
        Faults("nowhere=crash")


# -- rate limit across processes --------------------------------------------------------------------------------


def test_rate_limiter_replaces_a_lost_database_session(pg_url, caplog):
    """The limiter keeps its own PostgreSQL session; when the server drops it, the next grant and release
    reconnect instead of failing the request."""
    wh = Warehouse(pg_url)
    limiter = wh.rate_limiter("lost", 100, 60.0)  # a long window: no slot expires during the test
    limiter.release(limiter.acquire())
    for step in ("acquire", "release"):
        slot = limiter.acquire() if step == "release" else None
        pid = limiter._pg().info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        caplog.clear()
        with caplog.at_level("WARNING", logger="etl_assets.ratelimit"):
            if step == "acquire":
                limiter.release(limiter.acquire())
            else:
                limiter.release(slot)
        assert "session was lost" in caplog.text, step
        assert limiter._pg().info.backend_pid != pid
    with wh.engine.connect() as c:
        assert (
            c.exec_driver_sql(
                "SELECT count(*) FROM etl_rate_limit_slots WHERE source = 'lost' AND done_at < at + 60"
            ).scalar()
            == 3
        )  # three requests, all released
    limiter.close()
    wh.dispose()


def test_rate_limit_holds_across_four_processes(tmp_path, server, pg_url):
    calls, period = 5, 0.5
    url = server.route("/items", pages_route(size=10))
    sources = write_sources(
        tmp_path,
        {
            "items": {
                "kind": "api",
                "url": url,
                "primary_key": ["id"],
                "pagination": {"type": "page", "size": 10},
                "rate_limit": {"calls": calls, "period_seconds": period},
            }
        },
    )
    procs = [
        subprocess.Popen(
            [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", pg_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    times = sorted(r.at for r in server.hits("/items"))
    # the four share the source's checkpoint too, so together they read the 11 pages at least once
    assert len(times) >= 11 and table_rows(pg_url, "SELECT count(*) FROM items")[0][0] == 100
    worst = max(sum(1 for u in times if t <= u < t + period) for t in times)
    assert worst <= calls, f"{worst} requests within {period}s: {[round(t - times[0], 3) for t in times]}"
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved >= 0.9 * calls / period, f"achieved {achieved:.2f}/s of {calls / period:.2f}/s"


# -- pools ------------------------------------------------------------------------------------------------------


def _dagster_env(tmp_path: Path, dagster_db_url: str, **extra) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    info = psycopg.conninfo.conninfo_to_dict(dagster_db_url)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": info.get("host", "127.0.0.1"),
        "DAGSTER_PG_PORT": str(info.get("port", 5432)),
        "DAGSTER_PG_USER": info.get("user", "postgres"),
        "DAGSTER_PG_PASSWORD": info.get("password", ""),
        "DAGSTER_PG_DB": info["dbname"],
        **extra,
    }


@pytest.fixture
def dagster_db(pg_server):
    name, url = _create_db(pg_server)
    yield url
    _drop_db(pg_server, name)


def test_two_runs_of_one_source_never_run_its_step_at_once(tmp_path, server, pg_url, dagster_db):
    url = server.route("/items", pages_route(size=25, delay=0.4))
    sources = write_sources(
        tmp_path,
        {
            "slow": {
                "kind": "api",
                "url": url,
                "primary_key": ["id"],
                "pagination": {"type": "page", "size": 25},
            }
        },
    )
    env = _dagster_env(tmp_path, dagster_db, ETL_SOURCES=str(sources), ETL_WAREHOUSE_URL=pg_url)
    # one process creates the instance's schema first: two fresh processes would race on it
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, capture_output=True, check=True)
    # and sets the pool's limit: Dagster creates a pool's row on first use, and two runs doing so at the same
    # instant collide on its unique key (UniqueViolation in initialize_concurrency_limit_to_default)
    subprocess.run(
        [str(BIN / "dagster"), "instance", "concurrency", "set", "etl/slow", "1"],
        env=env,
        capture_output=True,
        check=True,
    )
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_slow"]
    procs = [
        subprocess.Popen(
            cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n=====\n".join(o[-6000:] for o in outs)
    spans = table_rows(
        pg_url, "SELECT started_at, finished_at FROM etl_runs WHERE source = 'slow' ORDER BY started_at"
    )
    assert len(spans) == 2
    (s1, e1), (s2, e2) = spans
    assert e1 <= s2, f"steps overlapped: {spans}"
    with psycopg.connect(dagster_db) as conn:  # and Dagster says why the second one waited
        messages = [
            json.loads(e[0]).get("user_message")
            for e in conn.execute(
                "SELECT event FROM event_logs WHERE event LIKE '%%PoolMetadataValue%%'"
            ).fetchall()
        ]
    assert "Step blocked by limit for pool etl/slow" in messages


# -- exactly once under kill -9 ---------------------------------------------------------------------------------


def _big_csv(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write("id,name,amount\n")
        for i in range(1, n + 1):
            f.write(f"{i},name {i},{i * 0.5}\n")


def _killed_sessions_ended(url: str, timeout: float = 30.0) -> None:
    """Wait until no loader session is mid-statement or mid-transaction: the server finishes (or rolls back) what
    a killed client left it, and only then is the table what the kill left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = table_rows(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'etl-assets' "
            "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')",
        )
        if busy == [(0,)]:
            return
        time.sleep(0.05)
    raise AssertionError("the killed loader's sessions did not end")


@pytest.mark.parametrize("seed", [11, 23])
def test_kill_9_of_dagster_job_execute_then_rerun_is_exactly_once(tmp_path, pg_url, dagster_db, seed):
    n, chunk = 20_000, 1_000
    _big_csv(tmp_path / "big.csv", n)
    sources = write_sources(
        tmp_path,
        {
            "big": {
                "kind": "csv",
                "path": "big.csv",
                "chunk_rows": chunk,
                "columns": {"id": "integer", "name": "string", "amount": "float"},
            }
        },
    )
    # no primary key: rows are keyed by position, so a re-read batch would show up as a lost checkpoint
    env = _dagster_env(
        tmp_path,
        dagster_db,
        ETL_SOURCES=str(sources),
        ETL_WAREHOUSE_URL=pg_url,
        ETL_FAULTS="before_commit=delay(0.15)",
    )
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_big"]
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wh = Warehouse(pg_url)
    deadline = time.monotonic() + 90
    while wh.checkpoint("big") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))  # somewhere in the middle of the batches
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _killed_sessions_ended(pg_url)  # a COMMIT sent just before the kill still lands: count after it
    committed = wh.row_count("big")
    position = wh.checkpoint("big")["files"]
    assert 0 < committed < n
    assert next(iter(position.values()))["rows"] == committed  # the checkpoint is exactly what landed
    _what_run_monitoring_does(env)
    env.pop("ETL_FAULTS")
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:]
    ids = table_rows(pg_url, "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(id) FROM big")[0]
    assert ids == (n, n, 1, n, n * (n + 1) // 2)  # 0 lost, 0 duplicated
    processed = table_rows(pg_url, "SELECT records_processed FROM etl_runs WHERE status = 'success'")
    assert processed == [(n - committed,)]  # the rerun read only what had not landed
    wh.dispose()


def _what_run_monitoring_does(env: dict) -> None:
    """A SIGKILLed run stays STARTED and keeps its pool slot; the daemon's run monitoring (dagster.yaml) would mark
    it failed and free the slot. No daemon runs here, so do the same through the instance API."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    saved = {k: os.environ.get(k) for k in env if k.startswith("DAGSTER_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    try:
        with DagsterInstance.get() as instance:
            for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
                instance.report_run_failed(run)
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


# -- injected crashes at every fault point converge ---------------------------------------------------------------


def test_crash_at_every_fault_point_then_rerun_converges(tmp_path, server, pg_server):
    url = server.route("/items", pages_route(size=10))
    spec = {
        "kind": "api",
        "url": url,
        "primary_key": ["id"],
        "pagination": {"type": "page", "size": 10},
        "batch_rows": 10,
    }  # a batch per page, so there are batches to crash between
    sources = write_sources(tmp_path, {"items": spec})
    name, clean_url = _create_db(pg_server)
    try:
        assert cli_ingest(sources, clean_url).returncode == 0
        clean = table_rows(clean_url, "SELECT id, name FROM items ORDER BY id")
    finally:
        _drop_db(pg_server, name)
    assert len(clean) == 100
    for point in POINTS:
        name, url_db = _create_db(pg_server)
        try:
            crashed = cli_ingest(sources, url_db, env={"ETL_FAULTS": f"{point}=crash@nth=4"})
            assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr)
            exists = table_rows(url_db, "SELECT to_regclass('items') IS NOT NULL")[0][0]
            landed = table_rows(url_db, "SELECT count(*) FROM items")[0][0] if exists else 0
            # whole batches only (how many depends on how far the read-ahead thread got)
            assert landed % 10 == 0 and landed < 100, (point, landed)
            assert cli_ingest(sources, url_db).returncode == 0
            assert table_rows(url_db, "SELECT id, name FROM items ORDER BY id") == clean, point
        finally:
            _drop_db(pg_server, name)


def test_corrupted_batches_end_in_quarantine_nothing_lost(tmp_path, server, pg_url):
    url = server.route("/items", pages_route(size=10))
    sources = write_sources(
        tmp_path,
        {
            "items": {
                "kind": "api",
                "url": url,
                "primary_key": ["id"],
                "columns": {"id": "integer", "name": "string"},
                "pagination": {"type": "page", "size": 10},
                "batch_rows": 10,
            }
        },
    )
    res = cli_ingest(sources, pg_url, env={"ETL_FAULTS": "after_batch_read=corrupt@p=1; seed=3"})
    assert res.returncode == 0, res.stderr
    landed = table_rows(pg_url, "SELECT count(*) FROM items")[0][0]
    quarantined = table_rows(
        pg_url, "SELECT count(*), count(DISTINCT row_number || location) FROM etl_quarantine"
    )[0]
    assert landed + quarantined[0] == 100 and quarantined[0] == 10  # one value per page
    assert all(
        "NUL byte" in r[0] or "not a valid integer" in r[0]
        for r in table_rows(pg_url, "SELECT reason FROM etl_quarantine")
    )


# -- a dropped database connection and a flaky API, through Dagster's RetryPolicy --------------------------------


def test_pg_terminate_backend_mid_load_recovers_through_retry_policy(
    tmp_path, make_sources, pg_url, pg_server
):
    n = 12_000
    _big_csv(tmp_path / "big.csv", n)
    path, _ = make_sources(
        {
            "big": {
                "kind": "csv",
                "path": "big.csv",
                "chunk_rows": 1000,
                "primary_key": ["id"],
                "retry": {"max_retries": 3, "delay_seconds": 0.1},
            }
        }
    )
    os.environ["ETL_FAULTS"] = "before_commit=delay(0.2)"
    dbname = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    killed = []

    def terminator():
        deadline = time.monotonic() + 60
        with psycopg.connect(pg_server, autocommit=True) as admin:
            while not killed and time.monotonic() < deadline:
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name = 'etl-assets' AND state = 'idle in transaction'",
                    (dbname,),
                ).fetchall()
                killed.extend(r for r in rows if r[0])
                time.sleep(0.05)

    t = threading.Thread(target=terminator)
    try:
        t.start()
        result = materialize(
            list(build_definitions(str(path)).assets),
            resources={"warehouse": WarehouseResource(url=pg_url)},
            raise_on_error=False,
        )
    finally:
        os.environ.pop("ETL_FAULTS")
        t.join()
    assert killed, "no loader session was terminated"
    assert result.success
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert table_rows(pg_url, "SELECT count(*), count(DISTINCT id) FROM big")[0] == (n, n)


def test_flaky_api_500_429_timeout_truncated_json(tmp_path, server, make_sources, pg_url):
    failures = {}  # page -> failure mode served on its first attempt
    modes = [None, "500", "429", "timeout", "truncated"]

    def route(req):
        page = int(req.query["page"])
        mode = failures.setdefault(page, modes[(page - 1) % len(modes)])
        hits = sum(1 for r in server.hits("/flaky") if r.query.get("page") == str(page))
        if hits == 1 and mode == "500":
            return Reply(500, {"error": "boom"})
        if hits == 1 and mode == "429":
            return Reply(429, {"error": "slow down"}, {"Retry-After": "1"})
        if hits == 1 and mode == "timeout":
            time.sleep(1.2)
        body = json.dumps(ITEMS[(page - 1) * 10 : page * 10]).encode()
        if hits == 1 and mode == "truncated":
            return Reply(200, body[: len(body) // 2], {"Content-Type": "application/json"})
        return Reply(body=json.loads(body))

    url = server.route("/flaky", route)
    path, _ = make_sources(
        {
            "flaky": {
                "kind": "api",
                "url": url,
                "primary_key": ["id"],
                "timeout_seconds": 0.5,
                "pagination": {"type": "page", "size": 10},
                "batch_rows": 10,
                "retry": {"max_retries": 4, "delay_seconds": 0.05},
            }
        }
    )
    result = materialize(
        list(build_definitions(str(path)).assets), resources={"warehouse": WarehouseResource(url=pg_url)}
    )
    assert result.success
    assert table_rows(pg_url, "SELECT count(*), count(DISTINCT id) FROM flaky")[0] == (100, 100)
    # a truncated page fails the step after earlier pages committed: the retried step resumes at that page
    pages = [int(r.query["page"]) for r in server.hits("/flaky")]
    assert pages.count(1) == 1 and pages.count(5) == 2 and pages.count(10) == 2
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2  # the two truncated pages; 500, 429 and timeouts were absorbed by HTTP retries


# -- hostile and broken input -------------------------------------------------------------------------------------


def test_nul_bytes_and_huge_field_and_bad_encoding(tmp_path, pg_warehouse):
    path = tmp_path / "h.csv"
    huge = "x" * (10 * 1024 * 1024)
    path.write_text(f"id,note\n1,fine\n2,bad\x00byte\n3,{huge}\n")
    stats = ingest(
        CsvSource(name="hostile", kind="csv", path=str(path), primary_key=["id"]), pg_warehouse, "r1"
    )
    assert (stats.inserted, stats.failed) == (2, 1)
    with pg_warehouse.engine.connect() as c:
        assert c.exec_driver_sql("SELECT length(note) FROM hostile WHERE id = 3").scalar() == len(huge)
        assert "contains a NUL byte" in c.exec_driver_sql("SELECT reason FROM etl_quarantine").scalar()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,name\n" + b"1,ok\n" * 70000 + b"2,caf\xe9\n")  # invalid UTF-8 after the sample
    # the declared encoding is kept; the line that is not valid in it is quarantined, the rest of the file loads
    stats = ingest(CsvSource(name="enc", kind="csv", path=str(bad), encoding="utf-8"), pg_warehouse, "r2")
    assert (stats.inserted, stats.failed) == (70000, 1)
    with pg_warehouse.engine.connect() as c:
        row = c.exec_driver_sql(
            "SELECT row_number, reason, raw FROM etl_quarantine WHERE location = %s", (str(bad),)
        ).one()
    assert tuple(row) == (
        70002,
        "line 70002: not valid utf-8: byte 0xE9 at character 6 does not decode",
        "2,caf\\xe9",
    )


def test_billion_laughs_feed_neither_hangs_nor_blows_up(tmp_path):
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    doc = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol0 "lol">{lol}]>'
        '<rss version="2.0"><channel><title>&lol9;</title><item><title>x</title></item></channel></rss>'
    )
    path = tmp_path / "lol.xml"
    path.write_text(doc)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from etl_assets.config import RssSource; from etl_assets.extract.rss import RssExtractor; "
        "from etl_assets.errors import SourceError\n"
        f"try:\n  b = list(RssExtractor(RssSource(name='lol', kind='rss', url={str(path)!r})).batches(None))\n"
        "  print('rows', sum(len(x.frame) for x in b), max((len(str(v)) for x in b for v in x.frame.values.ravel()), default=0))\n"
        "except SourceError as e:\n  print('error', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-1000:]
    out = res.stdout.strip()
    assert out.startswith("error source 'lol'") or (
        out.startswith("rows") and int(out.split()[2]) < 10_000_000
    )


def test_redirect_to_another_host_is_refused(server):
    url = server.route("/moved", lambda r: Reply(302, b"", {"Location": "http://127.0.0.2:9/elsewhere"}))
    spec = ApiSource(name="moved", kind="api", url=url, headers={"X-Api-Key": "k"}, retry={"max_retries": 0})
    from etl_assets.extract.api import ApiExtractor

    with pytest.raises(
        SourceError,
        match=r"source 'moved': GET .*/moved: redirected to http://127.0.0.2:9/elsewhere: "
        r"http://127.0.0.2:9 is not the configured host http://127.0.0.1:\d+",
    ):
        list(ApiExtractor(spec).batches(None))


def test_same_host_redirect_is_followed(server):
    server.route("/new", lambda r: Reply(body=[{"id": 1}]))
    url = server.route("/old", lambda r: Reply(301, b"", {"Location": "/new"}))
    from etl_assets.extract.api import ApiExtractor

    rows = [len(b.frame) for b in ApiExtractor(ApiSource(name="m", kind="api", url=url)).batches(None)]
    assert rows == [1]


def test_feed_that_is_not_xml_at_all(tmp_path):
    path = tmp_path / "f.xml"
    path.write_bytes(b"\x00\x01\x02 not xml")
    with pytest.raises(SourceError, match="not an RSS/Atom feed"):
        list(
            __import__("etl_assets.extract.rss", fromlist=["x"])
            .RssExtractor(RssSource(name="f", kind="rss", url=str(path)))
            .batches(None)
        )
