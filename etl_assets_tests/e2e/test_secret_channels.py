"""No secret reaches any channel: the real `dagster job execute`, `etl-assets validate / ingest / serve`, on the
embedded default instance (SQLite) and on PostgreSQL, against a server that echoes what it is sent."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from ..conftest import REPO, _create_db, _drop_db, free_port
from ..loopback import LoopbackServer, Reply

BIN = Path(sys.executable).parent
ROWS = [{"id": i, "name": f"row {i}"} for i in range(1, 7)]


def _secret(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(12)}"


@pytest.fixture
def secrets_env():
    return {
        "ETL_T_KEY": _secret("urlkey"),
        "ETL_T_PARAM": _secret("paramtok"),
        "ETL_T_BEARER": _secret("bearer"),
        "ETL_T_COOKIE": _secret("cookie"),
        "ETL_T_PROXY": _secret("proxy"),
        "ETL_T_PATH": _secret("pathtok"),
    }


LITERAL_HEADER = "literal-header-" + "Q7w9e2r4t6y8"
URL_PASSWORD = "pw-" + "Zx81Cv72Bn63"


def _forms(values):
    out = set()
    for v in values:
        out |= {v, quote(v, safe=""), quote_plus(v)}
    return out


@pytest.fixture
def hostile(secrets_env):
    """The origin (echoes credentials into next links, records and error bodies) and a foreign host."""
    origin, foreign = LoopbackServer(), LoopbackServer()
    key = secrets_env["ETL_T_KEY"]
    foreign.route("/steal", lambda r: Reply(body=[{"id": 99, "name": "foreign"}]))

    def good(req):  # page 1 links to page 2 with the key echoed; page 2 echoes the bearer token into a record
        page = int(req.query.get("page", "1"))
        if page == 1:
            return Reply(body={"results": ROWS[:3], "next": f"{origin.base}/good?page=2&api_key={key}"})
        echoed = req.headers.get("authorization", "")
        return Reply(body={"results": [*ROWS[3:], {"id": 7, "name": echoed}], "next": None})

    origin.route("/good", good)
    origin.route(
        "/denied",
        lambda r: Reply(
            401,
            f"\x00denied {r.headers.get('authorization')} "
            f"cookie={r.headers.get('cookie')} key={key}".encode(),
            {"Content-Type": "text/plain"},
        ),
    )
    origin.route(
        "/hop", lambda r: Reply(body={"results": ROWS[:1], "next": f"{foreign.base}/steal?api_key={key}"})
    )
    origin.route(
        f"/tok/{secrets_env['ETL_T_PATH']}/items", lambda r: Reply(body={"results": ROWS[:2], "next": None})
    )
    yield origin, foreign
    origin.close()
    foreign.close()


def _sources(tmp_path: Path, origin: LoopbackServer) -> Path:
    headers = {
        "Authorization": "Bearer ${ETL_T_BEARER}",
        "X-Api-Key": LITERAL_HEADER,
        "Cookie": "sid=${ETL_T_COOKIE}",
        "Proxy-Authorization": "Basic ${ETL_T_PROXY}",
    }
    common = {
        "kind": "api",
        "records_path": "results",
        "primary_key": ["id"],
        "headers": headers,
        "pagination": {"type": "next_url"},
        "retry": {"max_retries": 0},
    }
    netloc = origin.base.replace("http://", f"http://user:{URL_PASSWORD}@")
    spec = {
        "good": {
            **common,
            "url": origin.base + "/good?api_key=${ETL_T_KEY}",
            "params": {"token": "${ETL_T_PARAM}"},
        },
        "denied": {**common, "url": netloc + "/denied?api_key=${ETL_T_KEY}"},
        "hop": {**common, "url": origin.base + "/hop?api_key=${ETL_T_KEY}"},
        "pathy": {**common, "url": origin.base + "/tok/${ETL_T_PATH}/items"},
    }
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, tmp_path):
    """(env, warehouse URL, Dagster PG URL or None): the embedded default instance with a SQLite warehouse, or
    Dagster's storage and the warehouse in PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env["DAGSTER_HOME"] = str(home)
    if request.param == "sqlite":
        shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        yield env, f"sqlite:///{tmp_path / 'warehouse.db'}", None
        return
    admin = request.getfixturevalue("pg_server")
    wh_name, wh_url = _create_db(admin)
    dg_name, dg_url = _create_db(admin)
    info = psycopg.conninfo.conninfo_to_dict(dg_url)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env.update(
        {
            "DAGSTER_PG_HOST": info.get("host", "127.0.0.1"),
            "DAGSTER_PG_PORT": str(info.get("port", 5432)),
            "DAGSTER_PG_USER": info.get("user", "postgres"),
            "DAGSTER_PG_PASSWORD": info.get("password", ""),
            "DAGSTER_PG_DB": info["dbname"],
        }
    )
    yield env, wh_url, dg_url
    _drop_db(admin, wh_name)
    _drop_db(admin, dg_name)


def _run(args, env, cwd, timeout=240):
    res = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def _http(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


def _dump_database(url: str) -> str:
    engine = sa.create_engine(url)
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()
            out.append(f"{table}: {[tuple(map(str, r)) for r in rows]}")
    engine.dispose()
    return "\n".join(out)


def _files_under(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


def test_no_secret_in_any_channel(tmp_path, hostile, secrets_env, deployment):
    origin, foreign = hostile
    env, wh_url, dagster_pg = deployment
    sources = _sources(tmp_path, origin)
    env = {
        **env,
        **secrets_env,
        "ETL_SOURCES": str(sources),
        "ETL_WAREHOUSE_URL": wh_url,
        "LOG_FORMAT": "json",
    }
    channels: dict[str, str] = {}

    code, channels["validate"] = _run([str(BIN / "etl-assets"), "validate"], env, tmp_path)
    assert code == 0, channels["validate"]
    assert "api_key=***" in channels["validate"] and "user:***@" not in channels["validate"]

    code, channels["dagster job execute"] = _run(
        [str(BIN / "dagster"), "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_all"],
        env,
        tmp_path,
    )
    assert code != 0  # `denied` and `hop` fail, each with its line
    code, channels["etl-assets ingest"] = _run(
        [str(BIN / "etl-assets"), "ingest", "denied", "hop"], env, tmp_path
    )
    assert code == 1

    port = free_port()
    serve = subprocess.Popen(
        [str(BIN / "etl-assets"), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                channels["/health"] = _http(base + "/health")
                break
            except OSError:
                time.sleep(0.1)
        channels["/stats"] = _http(base + "/stats")
        channels["/observability/metrics/json"] = _http(base + "/observability/metrics/json")
        channels["/observability/metrics"] = _http(base + "/observability/metrics")
    finally:
        serve.terminate()
        channels["serve output"] = serve.communicate(timeout=30)[0]
    stats = json.loads(channels["/stats"])

    channels["warehouse"] = _dump_database(wh_url)
    channels["DAGSTER_HOME files (SQLite event log, compute logs)"] = _files_under(Path(env["DAGSTER_HOME"]))
    if dagster_pg:
        channels["Dagster's PostgreSQL storage"] = _dump_database(dagster_pg)

    # The secrets were used where they were configured ...
    first = origin.hits("/good")[0]
    assert first.query == {"api_key": secrets_env["ETL_T_KEY"], "token": secrets_env["ETL_T_PARAM"]}
    assert first.headers["authorization"] == "Bearer " + secrets_env["ETL_T_BEARER"]
    assert first.headers["x-api-key"] == LITERAL_HEADER and first.headers["cookie"].endswith(
        secrets_env["ETL_T_COOKIE"]
    )
    assert (
        origin.hits("/denied")[0].headers["authorization"] != "Bearer " + secrets_env["ETL_T_BEARER"]
    )  # user info
    assert len(origin.hits(f"/tok/{secrets_env['ETL_T_PATH']}/items")) >= 1
    # ... went to no other host ...
    assert foreign.requests == []
    # ... and appear in no channel, in any spelling.
    leaked = {
        name: sorted(s for s in _forms([*secrets_env.values(), LITERAL_HEADER, URL_PASSWORD]) if s in text)
        for name, text in channels.items()
    }
    assert {k: v for k, v in leaked.items() if v} == {}

    # What the channels do say: the rows, the masked lineage, the failures, each in one line.
    engine = sa.create_engine(wh_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM good")).scalar() == 7
        assert conn.execute(sa.text("SELECT name FROM good WHERE id = 7")).scalar() == "***"
        lineage = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT _etl_source FROM good"))}
        assert lineage == {f"{origin.base}/good?api_key=***&token=***"}  # both pages landed as one batch
        # the origin's page landed before its next link was refused; the foreign rows never came
        assert [r[0] for r in conn.execute(sa.text("SELECT id FROM hop"))] == [1]
        errors = {
            r[0]: r[1]
            for r in conn.execute(sa.text("SELECT source, error FROM etl_runs WHERE error IS NOT NULL"))
        }
        stored = conn.execute(sa.text("SELECT position FROM etl_checkpoints WHERE source = 'good'")).scalar()
        stored = json.loads(stored) if isinstance(stored, str) else stored
    engine.dispose()
    assert "HTTP 401" in errors["denied"] and "***" in errors["denied"] and "\\x00" in errors["denied"]
    assert "is not the configured host" in errors["hop"] and "allowed_hosts" in errors["hop"]
    assert stored["next"] is None
    assert stats["sources"]["denied"]["last_run"]["status"] == "failure"
    for line in channels["etl-assets ingest"].splitlines():
        assert not line.startswith("Traceback"), channels["etl-assets ingest"]


def test_checkpoint_keeps_the_variable_not_its_value_and_resumes(tmp_path, server, monkeypatch, warehouse):
    """A next link that echoes the key is stored as ${VAR}; the rerun resumes there with the key itself."""
    from etl_assets.config_load import load_sources
    from etl_assets.errors import SourceError
    from etl_assets.pipeline import ingest

    key = _secret("resume")
    monkeypatch.setenv("ETL_T_RESUME", key)

    def pages(req):
        page = int(req.query.get("page", "1"))
        nxt = f"{server.base}/p?page={page + 1}&api_key={req.query['api_key']}" if page < 3 else None
        return Reply(body={"results": [{"id": page}], "next": nxt})

    server.route("/p", pages)
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "p": {
                    "kind": "api",
                    "url": server.base + "/p?api_key=${ETL_T_RESUME}",
                    "records_path": "results",
                    "primary_key": ["id"],
                    "max_pages": 2,
                    "pagination": {"type": "next_url"},
                }
            }
        )
    )
    spec = load_sources(path)["p"]
    with pytest.raises(SourceError, match="max_pages=2"):
        ingest(spec, warehouse, "r1")
    stored = warehouse.checkpoint("p")
    assert stored["next"]["url"] == server.base + "/p?page=3&api_key=${ETL_T_RESUME}"
    assert key not in json.dumps(stored)
    ingest(spec, warehouse, "r2")
    assert [r.query for r in server.hits("/p")][-1] == {"page": "3", "api_key": key}
    assert warehouse.row_counts()["p"] == 3
