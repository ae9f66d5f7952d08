"""`etl-assets validate` refuses what would break later, one line per problem; one bad source never takes the
Dagster code location down (the real CLI, the real `dagster job execute`, a real SQLite / PostgreSQL warehouse)."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterEventType
from dagster._core.definitions.utils import DISALLOWED_NAMES
from dagster._utils.schedules import is_valid_cron_string

from etl_assets.config import RESERVED_NAMES, ConfigError
from etl_assets.config_load import load_sources
from etl_assets.cron import cron_problem
from etl_assets.defs import build_definitions
from etl_assets.defs.resources import WarehouseResource

from ..conftest import REPO

ETL_ASSETS = str(Path(sys.executable).with_name("etl-assets"))
DAGSTER = str(Path(sys.executable).with_name("dagster"))
CSV = "id,name\n1,a\n2,b\n"
UNSET = "ETL_T_NEVER_SET_VAR"


def validate(path: Path, env: dict | None = None) -> tuple[int, list[str]]:
    res = subprocess.run(
        [ETL_ASSETS, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    lines = (res.stdout + res.stderr).splitlines()
    assert not any(ln.startswith("Traceback") for ln in lines), lines
    return res.returncode, lines


def csv(**kw) -> dict:
    return {"kind": "csv", "path": "drop.csv", **kw}


# (id, one source's spec, what its one line says); each is a mistake that validate used to pass.
CASES = [
    (
        "cron_out_of_range",
        csv(schedule="61 25 * * mon"),
        "key 'schedule': minute 61 is out of range 0-59; hour 25 is out of range 0-23 in '61 25 * * mon'",
    ),
    ("cron_month_13", csv(schedule="0 0 * 13 *"), "month 13 is out of range 1-12"),
    (
        "cron_weekday_word",
        csv(schedule="0 9 * * sunday"),
        "day of week 'sunday' is not a number 0-7 or sun-sat",
    ),
    ("cron_step_zero", csv(schedule="*/0 * * * *"), "a step must be 1 or more"),
    ("cron_never_fires", csv(schedule="0 0 31 4,6 *"), "never fires: no month it names has day 31"),
    ("cron_feb_30", csv(schedule="0 0 30 2 *"), "never fires"),
    (
        "header_var_unset",
        {"kind": "api", "url": "http://127.0.0.1:1/x", "headers": {"Authorization": f"Bearer ${{{UNSET}}}"}},
        f"source 'bad': headers.Authorization uses ${{{UNSET}}} but {UNSET} is not set",
    ),
    (
        "params_var_unset",
        {"kind": "api", "url": "http://127.0.0.1:1/x", "params": {"api_key": f"${{{UNSET}}}"}},
        f"params.api_key uses ${{{UNSET}}} but {UNSET} is not set",
    ),
    (
        "encoding_unknown",
        csv(encoding="klingon"),
        "key 'encoding': unknown text encoding 'klingon'; fix: a Python codec",
    ),
    ("encoding_not_text", csv(encoding="rot13"), "unknown text encoding 'rot13'"),
    (
        "column_map_unknown",
        csv(columns={"id": "integer", "name": "string"}, column_map={"Name": "nmae"}),
        "column_map values ['nmae'] not among columns ['id', 'name']",
    ),
    (
        "required_unknown",
        csv(columns={"id": "integer"}, drift={"required": ["id", "amount"]}),
        "drift.required ['amount'] not among columns ['id']",
    ),
    (
        "required_unknown_feed",
        {"kind": "rss", "url": "feed.xml", "drift": {"required": ["body"]}},
        "drift.required ['body'] not among columns ['id', 'title'",
    ),
    (
        "table_too_long",
        csv(table="t" * 64),
        "is 64 bytes in UTF-8, over PostgreSQL's limit of 63 (NAMEDATALEN); "
        "fix: set `table:` to a shorter name",
    ),
    ("table_too_long_utf8", csv(table="é" * 32), "table '" + "é" * 32 + "' is 64 bytes"),
    ("column_too_long", csv(columns={"c" * 64: "string"}), "longer than 63 bytes"),
]


@pytest.mark.parametrize("spec, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_refuses_each_mistake_with_one_line(tmp_path, spec, needle):
    path = tmp_path / "sources.yaml"
    path.write_text(
        yaml.safe_dump({"good": csv(), "bad": spec}, sort_keys=False, allow_unicode=True), "utf-8"
    )
    code, lines = validate(path)
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith(f"{path}: source 'bad': "), lines
    assert needle in lines[0]


@pytest.mark.parametrize(
    "name, needle",
    [
        ("x" * 64, "the source name, used as the table name, '" + "x" * 64 + "' is 64 bytes"),
        ("all", "the name is reserved"),  # its job would be ingest_all, the every-source job
        ("class", "the name is reserved"),  # Dagster refuses it as an asset name
        ("Orders", "must be snake_case"),
    ],
)
def test_validate_refuses_names_that_would_break_later(tmp_path, name, needle):
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"good": csv(), name: csv()}, sort_keys=False), "utf-8")
    code, lines = validate(path)
    assert code == 1 and len(lines) == 1 and needle in lines[0], lines
    assert "set `table:` to a shorter name" in lines[0] or len(name) < 64


def test_a_long_source_name_with_a_short_table_is_valid(make_sources):
    _, specs = make_sources({"n" * 70: csv(table="short")})
    assert specs["n" * 70].table_name == "short"


@pytest.mark.parametrize(
    "text, line",
    [
        # the same source twice: YAML would keep the second, silently
        (
            "orders:\n  kind: csv\n  path: a.csv\ncustomers:\n  kind: csv\n  path: c.csv\norders:\n  kind: csv\n"
            "  path: b.csv\n",
            "{path}:7: source 'orders' is defined twice (first at line 1); YAML would keep only the last",
        ),
        # a key twice inside a spec, at any depth
        (
            "orders:\n  kind: csv\n  path: a.csv\n  path: b.csv\ncustomers:\n  kind: csv\n  path: c.csv\n",
            "{path}:4: source 'orders': key 'path' is given twice in one mapping (first at line 3)",
        ),
        (
            "orders:\n  kind: csv\n  path: a.csv\n  drift: {required: [id], required: [name]}\ncustomers:\n  kind: csv\n"
            "  path: c.csv\n",
            "{path}:4: source 'orders': key 'required' is given twice in one mapping (first at line 4)",
        ),
    ],
)
def test_duplicate_keys_are_refused_with_their_line(tmp_path, text, line):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    code, lines = validate(path)
    assert code == 1 and lines and lines[0].startswith(line.format(path=path)), lines
    assert len(lines) == 1, lines
    with pytest.raises(ConfigError, match="twice"):
        load_sources(path)


def test_merge_keys_may_override_what_they_merge(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("base: &b {kind: csv, path: a.csv, chunk_rows: 5}\nother: {<<: *b, path: b.csv}\n")
    specs = load_sources(path)
    assert (specs["other"].path.endswith("b.csv"), specs["other"].chunk_rows) == (True, 5)


def test_every_problem_of_every_source_is_listed_once(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "a": csv(encoding="klingon", schedule="0 0 * * 9"),
                "b": {"kind": "api", "url": f"${{{UNSET}}}/x", "pagination": {"type": "page", "size": 0}},
                "ok": csv(),
            },
            sort_keys=False,
        )
    )
    code, lines = validate(path)
    assert code == 1 and len(lines) == 4, lines
    for source, says in [
        ("a", "key 'encoding': unknown text encoding 'klingon'"),
        ("a", "key 'schedule': day of week 9 is out of range 0-7"),
        ("b", f"url uses ${{{UNSET}}} but {UNSET} is not set"),
        ("b", "key 'pagination.size': Input should be greater than 0"),
    ]:
        assert sum(ln.startswith(f"{path}: source '{source}': {says}") for ln in lines) == 1, (says, lines)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("orders: {kind: csv, path: [\n", "not valid YAML"),
        (None, "sources file not found"),
    ],
)
def test_a_file_with_nothing_to_load_fails_the_whole_load_with_one_line(tmp_path, text, needle):
    path = tmp_path / "sources.yaml"
    if text is not None:
        path.write_text(text)
    code, lines = validate(path)
    assert code == 1 and len(lines) == 1 and needle in lines[0], lines
    with pytest.raises(ConfigError, match=needle):
        build_definitions(str(path))


# Expressions Dagster's own validator (its vendored croniter) is asked about; validate must agree.
CRONS = [
    "0 * * * *",
    "*/15 * * * *",
    "0 6 * * *",
    "0/15 9-17 * jan-dec mon-fri",
    "0 0 1,15 * *",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 * * fri-mon",
    "5-1 * * * *",
    "0 0 L * *",
    "0 0 ? * mon#2",
    "0 0 * * MON",
    "00 0 * * *",
    "0 0 29 2 *",
    "0 0 */40 * *",
    "0 0 * 1-12/3 *",
    "0 0 * * sun/2",
    "0 0 L,15 * *",
    "0 0 * * mon#2,fri#1",
    "61 25 * * mon",
    "60 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 * 0 *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "*/0 * * * *",
    "1-60 * * * *",
    "? * * * *",
    "0 0 * * 5L",
    "0 0 * * 1#6",
    "0 0 * * mon#0",
    "0 0 * * 1,",
    "0 0 ,1 * *",
    "5/ * * * *",
    "a * * * *",
    "0 0 * * sunday",
    "0 0 LW * *",
    "0 0 -1 * *",
    "* * * * * *",
    "0 0 30 2 *",
]
NEVER_FIRES = ["0 0 31 4 *", "0 0 30,31 2 *", "0 0 31 2,4,6 *"]  # Dagster accepts them; their ticks then fail


@pytest.mark.parametrize("expr", CRONS)
def test_cron_check_agrees_with_dagster(expr):
    assert (cron_problem(expr) is None) == is_valid_cron_string(expr), cron_problem(expr)


@pytest.mark.parametrize("expr", NEVER_FIRES)
def test_a_schedule_that_never_fires_is_refused(expr):
    assert "never fires" in (cron_problem(expr) or "")


def test_reserved_names_cover_what_dagster_refuses():
    assert set(DISALLOWED_NAMES) <= RESERVED_NAMES


def test_the_table_name_limit_is_postgresql_s(pg_warehouse):
    pg_warehouse.ensure_table("t" * 63, {"id": "integer"}, ["id"])
    with pytest.raises(sa.exc.IdentifierError):
        pg_warehouse.ensure_table("t" * 64, {"id": "integer"}, ["id"])


BAD = {"kind": "csv", "path": "drop.csv", "schedule": "61 25 * * mon"}
BAD_LINE = "source 'broken': key 'schedule': minute 61 is out of range 0-59"


def _two_good_one_bad(make_sources, tmp_path: Path) -> Path:
    (tmp_path / "drop.csv").write_text(CSV)
    path, _ = make_sources(
        {"alpha": csv(primary_key=["id"]), "beta": csv(table="beta_rows", schedule="0 * * * *")}
    )
    with path.open("a") as f:
        f.write(yaml.safe_dump({"broken": BAD}))
    return path


def test_one_bad_source_does_not_take_the_definitions_down(make_sources, tmp_path, caplog):
    path = _two_good_one_bad(make_sources, tmp_path)
    with caplog.at_level(logging.ERROR, logger="etl_assets"):
        defs = build_definitions(str(path))
    assert BAD_LINE in caplog.text and "its asset broken fails until this is fixed" in caplog.text
    assets = list(defs.assets)
    assert sorted(a.key.path[-1] for a in assets) == ["alpha", "beta", "broken"]
    assert {j.name for j in defs.jobs} == {"ingest_all", "ingest_alpha", "ingest_beta", "ingest_broken"}
    assert [s.name for s in defs.schedules] == ["beta_schedule"]  # the bad schedule is not handed to Dagster
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    # ingest_all: `materialize` refuses assets of different partitions definitions (each CSV source has its own)
    job = defs.resolve_job_def("ingest_all")
    result = job.execute_in_process(resources={"warehouse": WarehouseResource(url=url)}, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert [e.step_key for e in failures] == ["broken"]
    assert BAD_LINE in failures[0].step_failure_data.user_failure_data.description
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert {
        n: result.asset_materializations_for_node(n)[-1].metadata["records_inserted"].value
        for n in ("alpha", "beta")
    } == {"alpha": 2, "beta": 2}
    with sa.create_engine(url).connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM beta_rows").scalar() == 2


def test_a_header_variable_unset_only_here_still_loads_the_source(make_sources, tmp_path):
    """The code server may lack a token the run workers have: headers are expanded per run, so the asset is the
    real one; validate (run where the runs run) refuses it."""
    path, _ = make_sources({"ok": csv()})
    path.write_text(
        yaml.safe_dump(
            {"api": {"kind": "api", "url": "http://127.0.0.1:1/x", "headers": {"X-Key": f"${{{UNSET}}}"}}}
        )
    )
    defs = build_definitions(str(path))
    graph = defs.resolve_asset_graph()
    assert [graph.get(k).group_name for k in graph.get_all_asset_keys()] == ["api_sources"]
    code, lines = validate(path)
    assert code == 1 and len(lines) == 1 and f"headers.X-Key uses ${{{UNSET}}}" in lines[0], lines
    assert validate(path, {UNSET: "k3y-value"})[0] == 0


def test_dagster_job_execute_runs_a_good_source_while_another_is_bad(make_sources, tmp_path):
    path = _two_good_one_bad(make_sources, tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ETL_")},
        "DAGSTER_HOME": str(home),
        "ETL_SOURCES": str(path),
        "ETL_WAREHOUSE_URL": url,
    }

    # (ingest_broken failing with the line is test_one_bad_source_does_not_take_the_definitions_down's, in process)
    good = subprocess.run(
        [DAGSTER, "job", "execute", "-m", "etl_assets.definitions", "-j", "ingest_alpha"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert f"{path}: {BAD_LINE}" in good.stderr  # said at load, naming the source
    with sa.create_engine(url).connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM alpha").scalar() == 2
