"""Row identity without a primary key is a property of the row, never of batching (README "Row identity"), and an
API body must have the configured shape (README "Bad input")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from etl_assets.config import ApiSource, CsvSource, RssSource
from etl_assets.errors import SourceError
from etl_assets.pipeline import ingest
from etl_assets.warehouse import ROW_ID

from ..loopback import Reply

BIN = Path(sys.executable).parent


def rows(wh, sql: str) -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql).fetchall()]


def lose_checkpoint(wh) -> None:
    with wh.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM etl_checkpoints")


# -- APIs and feeds: a record is its content ----------------------------------------------------------------------


def test_latest_endpoint_keeps_every_distinct_record(server, warehouse):
    """A `/latest` endpoint answering the 3 newest records per call: three runs keep all 9 (the batch's location
    and the row's index, the old identity, made each run overwrite the last)."""
    calls = []

    def route(req):
        calls.append(req)
        base = (len(calls) - 1) * 3
        return Reply(body=[{"id": base + k, "reading": f"r{base + k}"} for k in (1, 2, 3)])

    spec = ApiSource(name="latest", kind="api", url=server.route("/latest", route))
    for run in range(3):
        stats = ingest(spec, warehouse, f"run-{run}")
        assert (stats.inserted, stats.updated) == (3, 0), run
    assert rows(warehouse, "SELECT id, reading FROM latest ORDER BY id") == [
        (i, f"r{i}") for i in range(1, 10)
    ]


@pytest.mark.parametrize(
    "first, second",
    [
        ({"batch_rows": 1000}, {"batch_rows": 7}),
        ({"batch_rows": 25}, {"batch_rows": 1000, "batch_seconds": 0.001}),  # every page its own batch
    ],
)
def test_paged_api_rerun_with_other_batch_sizes_gives_the_same_rows(server, warehouse, first, second):
    data = [{"id": i, "name": f"item {i}"} for i in range(1, 96)]

    def route(req):
        page = int(req.query["page"])
        return Reply(body=data[(page - 1) * 10 : page * 10])

    url = server.route("/items", route)
    spec = {"name": "items", "kind": "api", "url": url, "pagination": {"type": "page", "size": 10}}
    one = ingest(ApiSource(**spec, **first), warehouse, "r1")
    two = ingest(ApiSource(**spec, **second), warehouse, "r2")
    assert one.batches != two.batches  # the batching did differ
    assert (one.inserted, two.inserted, two.updated, two.unchanged) == (95, 0, 0, 95)
    assert rows(warehouse, "SELECT count(*), count(DISTINCT id) FROM items") == [(95, 95)]
    # a new record at the front shifts every record to another page and batch: only it is new
    data.insert(0, {"id": 0, "name": "newest"})
    three = ingest(ApiSource(**spec, batch_rows=13), warehouse, "r3")
    assert (three.inserted, three.updated) == (1, 0)
    assert rows(warehouse, "SELECT count(*), count(DISTINCT id), min(id) FROM items") == [(96, 96, 0)]


def test_identical_api_records_are_one_row_and_a_changed_record_is_a_new_one(server, warehouse):
    body = [{"sensor": "a", "value": 1}, {"sensor": "a", "value": 1}, {"value": 2, "sensor": "b"}]
    spec = ApiSource(name="readings", kind="api", url=server.route("/r", lambda r: Reply(body=body)))
    stats = ingest(spec, warehouse, "r1")
    assert (stats.inserted, stats.duplicate_keys) == (2, 1)
    body[2] = {"sensor": "b", "value": 3}  # append-only: the old version stays, the new one is added
    ingest(spec, warehouse, "r2")
    assert rows(warehouse, "SELECT sensor, value FROM readings ORDER BY sensor, value") == [
        ("a", 1),
        ("b", 2),
        ("b", 3),
    ]
    ids = [r[0] for r in rows(warehouse, f"SELECT {ROW_ID} FROM readings")]
    assert len(set(ids)) == 3 and all(len(i) == 40 for i in ids)


def test_feed_without_primary_key_is_keyed_by_entry_content(tmp_path, warehouse):
    def feed(*items: str) -> None:
        entries = "".join(f"<item><title>{t}</title><link>http://x/{t}</link></item>" for t in items)
        (tmp_path / "f.xml").write_text(
            f'<rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'
        )

    spec = RssSource(name="news", kind="rss", url=str(tmp_path / "f.xml"), primary_key=[])
    feed("a", "b")
    assert ingest(spec, warehouse, "r1").inserted == 2
    feed("c", "a", "b")  # a new entry first: the others keep their identity
    assert (ingest(spec, warehouse, "r2").inserted) == 1
    assert rows(warehouse, "SELECT title FROM news ORDER BY title") == [("a",), ("b",), ("c",)]


# -- files: path + version + row number; a new version replaces the old ------------------------------------------


def write_csv(path: Path, ids: list[int]) -> None:
    path.write_text("n,label\n" + "".join(f"{i},row {i}\n" for i in ids))


@pytest.mark.parametrize(
    "edit, expected",
    [
        ("row 2 deleted", [1, 3, 4, 5]),
        ("rows appended", [1, 2, 3, 4, 5, 6, 7]),
        ("rows reordered", [1, 2, 3, 4, 5]),
    ],
)
def test_a_changed_file_replaces_its_rows(tmp_path, warehouse, edit, expected):
    path = tmp_path / "export.csv"
    write_csv(path, [1, 2, 3, 4, 5])
    spec = CsvSource(name="export", kind="csv", path=str(path), chunk_rows=2)  # three batches
    assert ingest(spec, warehouse, "r1").inserted == 5
    write_csv(
        path,
        {
            "row 2 deleted": [1, 3, 4, 5],
            "rows appended": [1, 2, 3, 4, 5, 6, 7],
            "rows reordered": [5, 3, 1, 4, 2],
        }[edit],
    )
    stats = ingest(CsvSource(name="export", kind="csv", path=str(path), chunk_rows=3), warehouse, "r2")
    assert stats.inserted == len(expected)
    assert rows(warehouse, "SELECT n, label FROM export ORDER BY n") == [(i, f"row {i}") for i in expected]
    assert rows(warehouse, "SELECT DISTINCT _etl_run_id, _etl_source FROM export") == [("r2", str(path))]


def test_same_file_read_again_with_other_chunks_lands_on_the_same_rows(tmp_path, warehouse):
    path = tmp_path / "same.csv"
    path.write_text(
        "v\n" + "same\nsame\nother\n" * 3
    )  # identical rows at different positions are different rows
    assert (
        ingest(CsvSource(name="same", kind="csv", path=str(path), chunk_rows=2), warehouse, "r1").inserted
        == 9
    )
    lose_checkpoint(warehouse)
    again = ingest(CsvSource(name="same", kind="csv", path=str(path), chunk_rows=4), warehouse, "r2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 9)
    assert rows(warehouse, "SELECT count(*), count(DISTINCT _etl_row_id) FROM same") == [(9, 9)]


def test_a_new_version_replaces_only_its_own_file(tmp_path, warehouse):
    drop = tmp_path / "drop"
    drop.mkdir()
    write_csv(drop / "a.csv", [1, 2, 3])
    write_csv(drop / "b.csv", [1, 2, 3])  # the same content under another path: rows of their own
    spec = CsvSource(name="drops", kind="csv", path=str(drop / "*.csv"))
    assert ingest(spec, warehouse, "r1").inserted == 6
    write_csv(drop / "a.csv", [1, 3])
    second = ingest(spec, warehouse, "r2")
    assert (second.processed, second.inserted) == (2, 2)
    got = rows(warehouse, "SELECT _etl_source, n FROM drops ORDER BY _etl_source, n")
    assert got == [(str(drop / "a.csv"), 1), (str(drop / "a.csv"), 3)] + [
        (str(drop / "b.csv"), i) for i in (1, 2, 3)
    ]
    (drop / "a.csv").write_text("n,label\n")  # emptied: the new version has no rows, so the file has none
    ingest(spec, warehouse, "r3")
    assert rows(warehouse, "SELECT DISTINCT _etl_source FROM drops") == [(str(drop / "b.csv"),)]


def _cli(sources: Path, url: str, faults: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ETL_FAULTS"}
    if faults:
        env["ETL_FAULTS"] = faults
    return subprocess.run(
        [str(BIN / "etl-assets"), "ingest", "--sources", str(sources), "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "point, nth, landed",
    [
        (
            "before_commit",
            1,
            0,
        ),  # killed inside the transaction that deletes the old version: nothing changed
        ("after_commit", 1, 3),  # killed after the new version's first batch: the old rows went with it
        ("after_commit", 2, 6),  # mid-file: the resume keeps the new version's own rows
    ],
)
def test_kill_9_while_a_new_version_lands_then_rerun_is_exactly_once(tmp_path, warehouse, point, nth, landed):
    path = tmp_path / "big.csv"
    write_csv(path, list(range(1, 11)))
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"big": {"kind": "csv", "path": str(path), "chunk_rows": 3}}))
    url = warehouse.engine.url.render_as_string(hide_password=False)
    assert (
        ingest(CsvSource(name="big", kind="csv", path=str(path), chunk_rows=3), warehouse, "r0").inserted
        == 10
    )
    write_csv(path, list(range(101, 111)))  # the new version: four batches of 3, 3, 3, 1
    crashed = _cli(sources, url, f"{point}=crash@nth={nth}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    got = [r[0] for r in rows(warehouse, "SELECT n FROM big ORDER BY n")]
    assert got == (list(range(1, 11)) if landed == 0 else list(range(101, 101 + landed)))
    position = warehouse.checkpoint("big")["files"][str(path)]
    assert position["rows"] == (10 if landed == 0 else landed)  # the checkpoint is exactly what landed
    rerun = _cli(sources, url)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rows(warehouse, "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM big") == [
        (10, 10, 101, 110)
    ]
    done = rows(
        warehouse, "SELECT records_processed FROM etl_runs WHERE status = 'success' ORDER BY started_at"
    )
    assert done[-1] == (10 - landed,)  # the rerun read only what had not landed


# -- API bodies must have the configured shape ----------------------------------------------------------------------


ERROR_BODIES = [
    {"error": "quota exceeded", "code": 42},
    {"errors": [{"message": "field 'x' is unknown"}]},
    {"message": "Invalid API key", "status": "UNAUTHENTICATED"},
    {"ok": False, "error": "invalid_auth"},
    {"status": "error", "message": "the backend is down", "code": 503},
    {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "no access"},
    {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}},
]


@pytest.mark.parametrize("records_path", ["", "data", "data.items"])
@pytest.mark.parametrize("body", ERROR_BODIES, ids=lambda b: next(iter(b)))
def test_error_looking_body_lands_nothing_and_keeps_the_checkpoint(server, warehouse, body, records_path):
    answers = [
        [{"id": 1}]
        if not records_path
        else {"data": [{"id": 1}]}
        if records_path == "data"
        else {"data": {"items": [{"id": 1}]}},
        body,
    ]
    url = server.route("/e", lambda r: Reply(body=answers[0]))
    spec = ApiSource(name="e", kind="api", url=url, records_path=records_path)
    ingest(spec, warehouse, "r1")
    before = warehouse.checkpoint("e")
    answers.pop(0)
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r2")
    msg = str(err.value)
    assert msg.startswith(f"source 'e': GET {url}: HTTP 200 but the body is an error, not records: ")
    assert "\n" not in msg and len(msg) < 500 and not err.value.retryable
    assert warehouse.checkpoint("e") == before
    assert rows(warehouse, "SELECT id FROM e") == [(1,)]


def test_an_error_beside_records_is_refused_and_no_record_is_quoted(server, warehouse):
    """GraphQL's partial answer: records and `errors`. Some records are missing, so none land."""
    body = {"data": {"items": [{"id": 1, "secret_value": "ROW-VALUE-1"}]}, "errors": [{"message": "partial"}]}
    spec = ApiSource(
        name="g", kind="api", url=server.route("/g", lambda r: Reply(body=body)), records_path="data.items"
    )
    with pytest.raises(
        SourceError, match=r'the body is an error, not records: \{"errors": \[\{"message": "partial"'
    ) as err:
        ingest(spec, warehouse, "r1")
    assert "ROW-VALUE-1" not in str(err.value)
    assert warehouse.row_count("g") == 0 and warehouse.checkpoint("g") is None


def test_a_page_that_is_an_error_stops_the_pass_at_that_page(server, warehouse):
    broken = {"on": True}

    def route(req):
        page = int(req.query["page"])
        if page == 2 and broken["on"]:
            return Reply(body={"error": "quota exceeded", "code": 42})
        return Reply(body=[{"id": i} for i in range((page - 1) * 5 + 1, min(page * 5, 12) + 1)])

    spec = ApiSource(
        name="p",
        kind="api",
        url=server.route("/p", route),
        batch_rows=5,
        pagination={"type": "page", "size": 5},
    )
    with pytest.raises(SourceError, match="quota exceeded"):
        ingest(spec, warehouse, "r1")
    assert warehouse.row_count("p") == 5  # page 1 had landed; page 2 did not, and the checkpoint waits there
    assert warehouse.checkpoint("p")["next"]["params"]["page"] == 2
    broken["on"] = False
    assert ingest(spec, warehouse, "r2").inserted == 7
    assert [int(r.query["page"]) for r in server.hits("/p")] == [1, 2, 2, 3]


def test_an_object_where_the_default_expects_a_list(server, warehouse):
    envelope = {"results": [{"id": 1}, {"id": 2}], "count": 2}
    url = server.route("/o", lambda r: Reply(body=envelope))
    with pytest.raises(SourceError) as err:
        ingest(ApiSource(name="o", kind="api", url=url), warehouse, "r1")
    assert str(err.value) == (
        f"source 'o': GET {url}: the body is an object, not a list of records; its key "
        "'results' holds a list of objects; fix: set records_path: results; if the object "
        "itself is one record, set records_path: '.'"
    )
    assert warehouse.row_count("o") == 0
    single = {"id": 7, "status": "ok", "message": "fine", "items": [{"sku": "a"}]}
    one = server.route("/one", lambda r: Reply(body=single))
    with pytest.raises(SourceError, match="the body is an object, not a list of records"):
        ingest(ApiSource(name="one", kind="api", url=one), warehouse, "r2")
    stats = ingest(ApiSource(name="one", kind="api", url=one, records_path="."), warehouse, "r3")
    assert stats.inserted == 1
    assert rows(warehouse, "SELECT id, status FROM one") == [(7, "ok")]
    items = rows(warehouse, "SELECT items FROM one")[0][0]  # JSON: text on SQLite, JSONB on PostgreSQL
    assert (json.loads(items) if isinstance(items, str) else items) == [{"sku": "a"}]


def test_envelopes_that_only_look_busy_still_load(server, warehouse):
    """Status words of a successful answer are not errors."""
    body = {
        "status": "ok",
        "code": 200,
        "message": "success",
        "errors": [],
        "error": None,
        "data": [{"id": 1}],
    }
    spec = ApiSource(
        name="fine", kind="api", url=server.route("/f", lambda r: Reply(body=body)), records_path="data"
    )
    assert ingest(spec, warehouse, "r1").inserted == 1
