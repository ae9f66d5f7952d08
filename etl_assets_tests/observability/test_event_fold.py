"""The event-log fold on both instance kinds: exact and restart-safe from its cursor, tick after tick.

The embedded default (deploy/dagster.local.yaml) shards its SQLite event log per run, where a plain storage-id
cursor is refused; every fold after the first, and every metrics request after the first, must still answer.
"""

from __future__ import annotations

import json
import urllib.request

from dagster import DagsterEventType, materialize

from etl_assets.defs import build_definitions
from etl_assets.defs.event_fold import read_event_log
from etl_assets.defs.resources import WarehouseResource
from etl_assets.observability.event_totals import EventTotals
from etl_assets.serve import Observer, create_app

from ..loopback import Reply
from .conftest import HttpApp


def _sources(tmp_path, make_sources, server):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "items_1.csv").write_text("id,qty\n1,3\n2,4\n", encoding="utf-8")
    pages = {"n": 0}

    def people(_seen):
        pages["n"] += 1
        return Reply(200, [{"id": pages["n"], "name": "a"}])

    path, _ = make_sources(
        {
            "items": {"kind": "csv", "path": str(tmp_path / "drop" / "items_*.csv"), "primary_key": ["id"]},
            "people": {"kind": "api", "url": server.route("/people", people), "primary_key": ["id"]},
        }
    )
    return path


def _events(instance, event_type: DagsterEventType) -> int:
    return sum(len(instance.all_logs(run.run_id, of_type=event_type)) for run in instance.get_runs())


def test_fold_continues_exactly_from_its_cursor_on_both_instance_kinds(
    dagster_instance, tmp_path, make_sources, server
):
    instance = dagster_instance
    defs = build_definitions(str(_sources(tmp_path, make_sources, server)))
    wh_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    resources = {"warehouse": WarehouseResource(url=wh_url)}

    materialize(list(defs.assets), instance=instance, resources=resources)
    first = read_event_log(instance)
    assert first.get("etl_materializations_total") == {("items",): 1, ("people",): 1}
    assert first.get("etl_dagster_runs_total") == {("__ephemeral_asset_job__", "success"): 1}
    assert first.get("etl_http_requests_total") == {("people", "200"): 1}

    again = read_event_log(instance, first)  # nothing new: the same totals, the same cursor
    assert again.to_json() == first.to_json()

    (tmp_path / "drop" / "items_2.csv").write_text("id,qty\n3,5\n", encoding="utf-8")
    materialize(list(defs.assets), instance=instance, resources=resources)
    second = read_event_log(instance, first)
    assert second.get("etl_materializations_total") == {("items",): 2, ("people",): 2}
    assert second.get("etl_dagster_runs_total") == {("__ephemeral_asset_job__", "success"): 2}
    checks = sum(second.get("etl_asset_check_evaluations_total").values())
    assert checks == _events(instance, DagsterEventType.ASSET_CHECK_EVALUATION) > 0
    # a fold of the whole log ("restarted" with no cursor) and a replay from the first cursor agree exactly
    assert read_event_log(instance).series == second.series
    assert read_event_log(instance, first).to_json() == second.to_json()
    assert read_event_log(instance, page=1).to_json() == second.to_json()  # paged one record at a time

    # The endpoints fold again on every request: each of them answers, the JSON view after the text one too.
    app = HttpApp(create_app(Observer(wh_url, instance, sources=dict)))
    try:
        for path in ("/observability/metrics", "/observability/metrics/json", "/observability/metrics"):
            with urllib.request.urlopen(app.base + path, timeout=30) as resp:
                assert resp.status == 200, path
                body = resp.read().decode()
        assert 'etl_materializations_total{source="items"} 2.0' in body
        with urllib.request.urlopen(app.base + "/observability/metrics/json", timeout=30) as resp:
            assert json.loads(resp.read())["sources"]["people"]["http"]["requests"] == {"200": 2}
    finally:
        app.close()


def test_a_cursor_of_another_fold_version_is_refolded_from_the_start(
    dagster_instance, tmp_path, make_sources, server
):
    instance = dagster_instance
    defs = build_definitions(str(_sources(tmp_path, make_sources, server)))
    resources = {"warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.db'}")}
    materialize(list(defs.assets), instance=instance, resources=resources)
    stale = EventTotals(
        after={"RUN_SUCCESS": 10**9}, series={"etl_materializations_total": {'["items"]': 99}}
    )
    assert read_event_log(instance, stale).series == read_event_log(instance).series
