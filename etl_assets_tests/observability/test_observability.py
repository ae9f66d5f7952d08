"""Observability end to end: a real Pushgateway and promtool, both Dagster instance kinds, HTTP over loopback.

Runs land in a PostgreSQL warehouse through `dagster.materialize` on an instance of each kind (the embedded
default deploy/dagster.local.yaml and the production dagster.yaml); the metrics sensor is evaluated against
that instance and pushes to a `prometheus-pushgateway` started here; what the gateway serves must equal the
warehouse and the event log, and stay equal when the sensor is evaluated again with nothing new, re-evaluated
from an old cursor, or "restarted".
"""

import io
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
import yaml
from dagster import SkipReason, build_sensor_context, materialize
from prometheus_client.parser import text_string_to_metric_families

from etl_assets.config_load import load_sources
from etl_assets.defs import build_definitions
from etl_assets.defs.resources import WarehouseResource
from etl_assets.demo_api import serve as serve_demo_api
from etl_assets.logs import JsonFormatter
from etl_assets.observability import catalogue as m
from etl_assets.pipeline import ingest
from etl_assets.serve import Observer, create_app
from etl_assets.warehouse import Warehouse

from ..conftest import REPO, free_port
from ..loopback import Reply

SOURCE_TYPE = {"orders": "csv", "drifty": "csv", "customers": "api", "flaky": "api", "broken": "api"}
# Change with every evaluation by nature (a clock), so they are compared separately.
TIME_DEPENDENT = {"etl_checkpoint_age_seconds", "push_time_seconds", "push_failure_time_seconds"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not found (Debian: apt-get install -y prometheus prometheus-pushgateway)"
        if os.environ.get("ETL_REQUIRE_TOOLS") == "1":
            pytest.fail(msg + " but ETL_REQUIRE_TOOLS=1")
        pytest.skip(msg)
    return path


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if http_get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not come up within {seconds}s")


def samples(text: str, **match: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, labels without job/instance): value} of the samples whose labels include `match`."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if all(s.labels.get(k) == v for k, v in match.items()):
                # the gateway re-renders bucket bounds ("1" for "1.0"): compare them as numbers
                labels = tuple(
                    sorted(
                        (k, str(float(v)) if k == "le" else v)
                        for k, v in s.labels.items()
                        if k not in ("job", "instance")
                    )
                )
                out[(s.name, labels)] = s.value
    return out


def stable(values: dict) -> dict:
    return {k: v for k, v in values.items() if k[0] not in TIME_DEPENDENT}


def value(values: dict, name: str, **labels: str) -> float:
    return values[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def pushgateway(tmp_path):
    binary = tool("prometheus-pushgateway")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/-/ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def instance(dagster_instance):
    """Each instance kind (conftest.py): the embedded default deploy/dagster.local.yaml (SQLite, sharded per run)
    and the production dagster.yaml (PostgreSQL)."""
    return dagster_instance


@pytest.fixture
def sources(tmp_path, server, monkeypatch):
    """Five sources: CSV drops (one with a renamed column), a paged and rate-limited API, an API that fails once
    with a 503 (one HTTP retry), and one that answers 404 (a failed source run)."""
    api = serve_demo_api("127.0.0.1", 0)
    base = f"http://127.0.0.1:{api.server_address[1]}"
    hits = {"n": 0}

    def flaky(_seen):
        hits["n"] += 1
        if hits["n"] == 1:
            return Reply(503, {"error": "busy"}, {"Retry-After": "0"})
        return Reply(200, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])

    (tmp_path / "drifty.csv").write_text("id,qty\n1,3\n2,4\n", encoding="utf-8")
    shipped = yaml.safe_load((REPO / "sources.yaml").read_text(encoding="utf-8"))
    spec = {
        "orders": {**shipped["orders"], "path": str(REPO / "examples" / "drop" / "orders_*.csv")},
        "drifty": {
            "kind": "csv",
            "path": "drifty.csv",
            "primary_key": ["id"],
            "columns": {"id": "integer", "quantity": "integer"},
            "drift": {"required": ["id"]},
        },
        "customers": {
            **shipped["customers"],
            "url": f"{base}/api/customers",
            "rate_limit": {"calls": 1, "period_seconds": 0.3},
            "schedule": "*/15 * * * *",
        },
        "flaky": {
            "kind": "api",
            "url": server.route("/flaky", flaky),
            "primary_key": ["id"],
            "retry": {"max_retries": 2, "delay_seconds": 0.01},
        },
        "broken": {
            "kind": "api",
            "url": server.route("/broken", lambda r: Reply(404, {"error": "gone"})),
            "retry": {"max_retries": 0, "delay_seconds": 0.01},
        },
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    yield path
    api.shutdown()


def warehouse_truth(pg_url: str) -> dict:
    """The figures the metrics must equal, read straight from the warehouse with psycopg."""
    with psycopg.connect(pg_url) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        return {
            "records": {
                st: (p, i, u, f)
                for st, p, i, u, f in q(
                    "SELECT source_type, sum(records_processed), sum(records_inserted), sum(records_updated), "
                    "sum(records_failed) FROM etl_runs GROUP BY source_type"
                )
            },
            "runs": {
                (st, s): n
                for st, s, n in q("SELECT source_type, status, count(*) FROM etl_runs GROUP BY 1, 2")
            },
            "drift": dict(q("SELECT source, count(*) FROM etl_schema_drift GROUP BY source")),
            "quarantine": dict(q("SELECT source, count(*) FROM etl_quarantine GROUP BY source")),
            "rows": {
                t: q(f'SELECT count(*) FROM "{t}"')[0][0] for t in ("orders", "customers", "flaky", "drifty")
            },
        }


def event_log_truth(results) -> dict:
    """HTTP figures summed over the materializations the runs reported."""
    out = {"statuses": {}, "retries": {}, "waits": {}}
    for res in results:
        for ev in res.get_asset_materialization_events():
            mat = ev.step_materialization_data.materialization
            src, md = mat.asset_key.path[-1], {k: v.value for k, v in mat.metadata.items()}
            for status, n in md.get("http_statuses", {}).items():  # none on a CSV source
                out["statuses"][(src, status)] = out["statuses"].get((src, status), 0) + n
            if md.get("http_requests"):
                out["retries"][src] = out["retries"].get(src, 0) + md["http_retries"]
                out["waits"][src] = out["waits"].get(src, 0) + md["rate_limit_waits"]
    return out


def test_sensor_pushes_exact_restart_safe_metrics_and_the_endpoints_agree(
    pushgateway, instance, sources, pg_url, monkeypatch, tmp_path
):
    promtool = tool("promtool")
    monkeypatch.setenv("ETL_WAREHOUSE_URL", pg_url)
    defs = build_definitions(str(sources))
    sensor = next(s for s in defs.sensors if s.name == "etl_metrics_sensor")
    resources = {"warehouse": WarehouseResource(url=pg_url)}

    monkeypatch.delenv("ETL_PUSHGATEWAY_URL", raising=False)
    skipped = sensor(build_sensor_context(instance=instance))
    assert isinstance(skipped, SkipReason) and "ETL_PUSHGATEWAY_URL is not set" in skipped.skip_message
    monkeypatch.setenv("ETL_PUSHGATEWAY_URL", pushgateway)

    def tick(cursor):
        ctx = build_sensor_context(instance=instance, cursor=cursor)
        result = sensor(ctx)
        assert isinstance(result, SkipReason) and result.skip_message.startswith("pushed metrics to")
        pushed = samples(http_get(pushgateway + "/metrics")[1].decode(), job="etl_assets", instance="dagster")
        return ctx.cursor, pushed

    assets = list(defs.assets)
    # one run per source: each CSV source has partitions of its own, which one asset job cannot mix
    first = [materialize([a], instance=instance, resources=resources, raise_on_error=False) for a in assets]
    assert [r.success for r in first].count(False) == 1  # 'broken' answers 404; the other four land
    cursor1, pushed1 = tick(None)
    second = [
        materialize([a], instance=instance, resources=resources) for a in assets if a.key.path[-1] != "broken"
    ]
    cursor2, pushed2 = tick(cursor1)

    truth, events = warehouse_truth(pg_url), event_log_truth(first + second)
    assert truth["rows"] == {"orders": 199, "customers": 60, "flaky": 2, "drifty": 2}
    for st, (processed, inserted, updated, failed) in truth["records"].items():
        assert value(pushed2, "etl_records_processed_total", source_type=st) == processed
        assert value(pushed2, "etl_records_inserted_total", source_type=st) == inserted
        assert value(pushed2, "etl_records_updated_total", source_type=st) == updated
        assert value(pushed2, "etl_records_failed_total", source_type=st) == failed
    # inserts are the rows the tables hold; the one failed record is the one quarantined row
    assert value(pushed2, "etl_records_inserted_total", source_type="csv") == 199 + 2
    assert value(pushed2, "etl_records_inserted_total", source_type="api") == 60 + 2
    assert (
        value(pushed2, "etl_records_failed_total", source_type="csv")
        == sum(truth["quarantine"].values())
        == 1
    )
    assert {k: v for k, v in truth["runs"].items()} == {
        ("csv", "success"): 4,
        ("api", "success"): 4,
        ("api", "failure"): 1,
    }
    for (st, status), n in truth["runs"].items():
        assert value(pushed2, "etl_runs_total", source_type=st, status=status) == n
    assert value(pushed2, "etl_run_duration_seconds_count", source_type="api") == 5
    assert value(pushed2, "etl_run_duration_seconds_bucket", source_type="api", le="inf") == 5
    assert truth["drift"]["drifty"] > 0  # qty -> quantity
    assert value(pushed2, "schema_drift_detected_total", source_name="drifty") == truth["drift"]["drifty"]
    for table, n in truth["rows"].items():
        assert value(pushed2, "db_records_total", table=table) == n
    assert value(pushed2, "etl_quarantine_records", source="orders") == 1
    assert value(pushed2, "etl_source_consecutive_failures", source="broken") == 1
    assert value(pushed2, "etl_source_last_success_timestamp_seconds", source="broken") == 0
    assert value(pushed2, "etl_source_schedule_interval_seconds", source="customers") == 900
    # the HTTP series equal what the materializations reported
    assert events["retries"]["flaky"] == 1 and events["waits"]["customers"] > 0
    for (src, status), n in events["statuses"].items():
        assert value(pushed2, "etl_http_requests_total", source=src, status=status) == n
    for src, n in events["retries"].items():
        assert value(pushed2, "etl_http_retries_total", source=src) == n
        assert value(pushed2, "etl_rate_limit_waits_total", source=src) == events["waits"][src]
    assert (
        value(pushed2, "etl_dagster_runs_total", dagster_job="__ephemeral_asset_job__", status="failure") == 1
    )
    assert (
        value(pushed2, "etl_dagster_runs_total", dagster_job="__ephemeral_asset_job__", status="success") == 8
    )
    checks = sum(v for k, v in pushed2.items() if k[0] == "etl_asset_check_evaluations_total")
    assert checks == 4 * (4 + 4)  # four checks per materialization; 'broken' failed before any
    assert (
        value(pushed1, "etl_runs_total", source_type="csv", status="success") == 2
    )  # the first tick saw run 1

    # Nothing new: the same figures and the same cursor. A re-evaluated tick (from the previous cursor) and a
    # restarted daemon (the stored cursor) push the same figures too: nothing reset, nothing counted twice.
    cursor3, pushed3 = tick(cursor2)
    assert cursor3 == cursor2 and stable(pushed3) == stable(pushed2)
    _, replayed = tick(cursor1)
    assert stable(replayed) == stable(pushed2)
    _, restarted = tick(cursor2)
    assert stable(restarted) == stable(pushed2)

    # The endpoints, through a real HTTP client, compute the same figures without the gateway.
    import uvicorn

    specs = load_sources(sources)
    app = create_app(Observer(pg_url, instance, sources=lambda: specs))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/health")
        status, body = http_get(base + "/health")
        assert status == 200 and json.loads(body)["checks"] == {
            "warehouse": {"ok": True},
            "dagster": {"ok": True},
        }
        status, body = http_get(base + "/stats")
        stats = json.loads(body)
        assert status == 200 and stats["tables"]["orders"] == 199
        assert stats["sources"]["broken"]["last_run"]["status"] == "failure"
        assert stats["sources"]["customers"]["checkpoint"]["position"] is not None
        status, text = http_get(base + "/observability/metrics")
        assert status == 200
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
        assert stable(samples(text.decode())) == stable(pushed2)
        status, body = http_get(base + "/observability/metrics/json")
        js = json.loads(body)["sources"]
        assert js["customers"]["runs"]["success"] == 2 and js["broken"]["runs"]["failure"] == 1
        assert js["customers"]["rate_limit"] == {"calls": 1, "period_seconds": 0.3}
        assert js["customers"]["rate_limit_waits"] == events["waits"]["customers"]
        assert js["orders"]["records"]["inserted"] == 199 and js["orders"]["quarantined_rows"] == 1
        assert js["drifty"]["drift"]["events"] == truth["drift"]["drifty"]
        assert js["flaky"]["http"] == {"requests": {"200": 2}, "retries": 1}
    finally:
        srv.should_exit = True
        thread.join(10)


def test_health_names_what_failed(instance):
    app = create_app(Observer("postgresql://postgres@127.0.0.1:1/nowhere", instance, sources=dict))
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, body = http_get(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        health = json.loads(body)
        assert status == 503 and health["failed"] == ["warehouse"] and health["checks"]["dagster"]["ok"]
        assert "OperationalError" in health["checks"]["warehouse"]["error"]
        status, body = http_get(f"http://127.0.0.1:{port}/observability/metrics")  # no partial figures
        assert status == 503 and body.startswith(b"metrics unavailable: OperationalError")
    finally:
        srv.should_exit = True
        thread.join(10)


def test_alert_rules_pass_promtool():
    promtool = tool("promtool")
    res = subprocess.run(
        [promtool, "check", "rules", str(REPO / "deploy" / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_prometheus_config_passes_promtool():
    promtool = tool("promtool")
    res = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(REPO / "deploy" / "prometheus" / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_grafana_dashboard_queries_parse_and_use_only_defined_metrics(tmp_path):
    promtool = tool("promtool")
    dash = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "etl-assets.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    # promtool parses PromQL only inside rules: each query becomes a recording rule
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "q.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    res = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "q.yml")], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    names = set(m.METRICS) | {f"{n}_{s}" for n in m.METRICS for s in ("bucket", "count", "sum")}
    for expr in exprs:
        used = set(re.findall(r"\b(?:etl|db|schema)_[a-z_]+", expr))
        assert used and used <= names, (expr, used - names)


def test_core_log_lines_are_json_objects_with_event_source_run_and_counts(server, make_sources, tmp_path):
    """Run start/finish, batches, quarantine, drift, an HTTP retry and a rate-limit wait: one JSON object each."""
    hits = {"n": 0}

    def pages(seen):
        hits["n"] += 1
        if hits["n"] == 1:
            return Reply(503, {"error": "busy"}, {"Retry-After": "0"})
        page = int(seen.query.get("page", 1))
        return Reply(
            200,
            [{"id": i, "n": "x" if i == 3 else str(i)} for i in range(page * 2 - 1, page * 2 + 1)]
            if page <= 2
            else [],
        )

    url = server.route("/pages", pages)
    (tmp_path / "d.csv").write_text("id,qty\n1,2\n", encoding="utf-8")
    _, specs = make_sources(
        {
            "paged": {
                "kind": "api",
                "url": url,
                "primary_key": ["id"],
                "columns": {"id": "integer", "n": "integer"},
                "pagination": {"type": "page", "page_param": "page", "size_param": "per_page", "size": 2},
                "rate_limit": {"calls": 1, "period_seconds": 0.3},
                "retry": {"max_retries": 2, "delay_seconds": 0.01},
            },
            "drop": {
                "kind": "csv",
                "path": "d.csv",
                "primary_key": ["id"],
                "columns": {"id": "integer", "quantity": "integer"},
                "drift": {"required": ["id"]},
            },
            "gone": {
                "kind": "api",
                "url": server.route("/gone", lambda r: Reply(404, {})),
                "retry": {"max_retries": 0, "delay_seconds": 0.01},
            },
        }
    )
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("etl_assets")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        ingest(specs["paged"], wh, "run-1")
        ingest(specs["drop"], wh, "run-1")
        with pytest.raises(Exception, match="HTTP 404"):
            ingest(specs["gone"], wh, "run-2")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        wh.dispose()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line parses
    assert all({"timestamp", "level", "event", "message"} <= set(x) for x in lines)
    by = {}
    for x in lines:
        by.setdefault(x["event"], []).append(x)
    assert {
        "run_started",
        "batch_loaded",
        "quarantine",
        "schema_drift",
        "http_retry",
        "rate_limit_wait",
        "run_finished",
        "run_failed",
    } <= set(by)
    done = next(x for x in by["run_finished"] if x["source"] == "paged")
    assert (done["run_id"], done["records_inserted"], done["records_failed"], done["http_retries"]) == (
        "run-1",
        3,
        1,
        1,
    )
    assert by["quarantine"][0]["source"] == "paged" and by["quarantine"][0]["records_failed"] == 1
    # lines that cannot know the source by themselves get it from the ingest in progress
    assert {(x["source"], x["run_id"]) for x in by["http_retry"]} == {("paged", "run-1")}
    assert all(x["source"] == "paged" and x["wait_seconds"] > 0 for x in by["rate_limit_wait"])
    # 'x' among the sampled values of `n` is a type change of paged; drop's header renamed qty
    assert [
        (x["expected"], x["observed"], x["decision"]) for x in by["schema_drift"] if x["source"] == "drop"
    ] == [("quantity", "qty", "auto_mapped")]
    failed = by["run_failed"][0]
    assert (failed["source"], failed["run_id"], failed["level"]) == ("gone", "run-2", "ERROR")
    assert "HTTP 404" in failed["error"]
