import logging

import pytest

from etl_assets.config import ApiSource
from etl_assets.errors import SourceError
from etl_assets.extract.api import ApiExtractor
from etl_assets.pipeline import ingest

from ..loopback import Reply

ITEMS = [{"id": i, "name": f"item {i}", "updated_at": f"2024-01-{i:02d}T00:00:00Z"} for i in range(1, 24)]


def api(url, **kw):
    kw.setdefault("retry", {"max_retries": 2, "delay_seconds": 0.01})
    return ApiSource(name="items", kind="api", url=url, **kw)


def ids(extractor, checkpoint=None):
    return [int(i) for b in extractor.batches(checkpoint) if len(b.frame) for i in b.frame["id"]]


def test_page_number(server):
    def route(req):
        page, size = int(req.query["page"]), int(req.query["per_page"])
        return Reply(body={"data": ITEMS[(page - 1) * size : page * size]})

    url = server.route("/items", route)
    ex = ApiExtractor(api(url, records_path="data", pagination={"type": "page", "size": 10}))
    assert ids(ex) == list(range(1, 24))
    assert [r.query["page"] for r in server.hits("/items")] == ["1", "2", "3"]  # a short page ends it


def test_page_number_without_size_stops_on_empty_page(server):
    url = server.route(
        "/items", lambda r: Reply(body=ITEMS[(int(r.query["p"]) - 1) * 5 : int(r.query["p"]) * 5])
    )
    ex = ApiExtractor(
        api(url, pagination={"type": "page", "page_param": "p", "size_param": None, "size": None})
    )
    assert ids(ex) == list(range(1, 24))
    assert len(server.hits("/items")) == 6


def test_offset(server):
    def route(req):
        off, lim = int(req.query["offset"]), int(req.query["limit"])
        return Reply(body={"results": ITEMS[off : off + lim]})

    url = server.route("/items", route)
    ex = ApiExtractor(api(url, records_path="results", pagination={"type": "offset", "limit": 7}))
    assert ids(ex) == list(range(1, 24))
    assert [r.query["offset"] for r in server.hits("/items")] == ["0", "7", "14", "21"]


def test_cursor(server):
    def route(req):
        start = int(req.query.get("after", "0"))
        page = ITEMS[start : start + 8]
        nxt = str(start + 8) if start + 8 < len(ITEMS) else None
        return Reply(body={"items": page, "meta": {"next": nxt}})

    url = server.route("/items", route)
    ex = ApiExtractor(
        api(
            url,
            records_path="items",
            pagination={"type": "cursor", "cursor_param": "after", "cursor_path": "meta.next"},
        )
    )
    assert ids(ex) == list(range(1, 24))
    assert [r.query.get("after") for r in server.hits("/items")] == [None, "8", "16"]


def test_link_header(server):
    def route(req):
        page = int(req.query.get("page", "1"))
        links = []
        if page * 10 < len(ITEMS):
            links.append(f'<{server.base}/items?page={page + 1}>; rel="next"')
        links.append(f'<{server.base}/items?page=3>; rel="last"')
        return Reply(body=ITEMS[(page - 1) * 10 : page * 10], headers={"Link": ", ".join(links)})

    url = server.route("/items", route)
    assert ids(ApiExtractor(api(url, pagination={"type": "link_header"}))) == list(range(1, 24))


def test_next_url_relative_and_absolute(server):
    def route(req):
        page = int(req.query.get("page", "1"))
        nxt = None
        if page * 10 < len(ITEMS):
            nxt = f"/items?page={page + 1}" if page == 1 else f"{server.base}/items?page={page + 1}"
        return Reply(body={"results": ITEMS[(page - 1) * 10 : page * 10], "next": nxt})

    url = server.route("/items", route)
    ex = ApiExtractor(api(url, records_path="results", pagination={"type": "next_url", "next_path": "next"}))
    assert ids(ex) == list(range(1, 24))


def test_none(server):
    url = server.route("/items", lambda r: Reply(body=ITEMS))
    assert ids(ApiExtractor(api(url))) == list(range(1, 24))
    assert len(server.hits("/items")) == 1


def test_resume_mid_pagination_from_checkpoint(server):
    def route(req):
        page = int(req.query["page"])
        return Reply(body=ITEMS[(page - 1) * 5 : page * 5])

    url = server.route("/items", route)
    ex = ApiExtractor(api(url, pagination={"type": "page", "size": 5}, batch_rows=5))  # a batch per page
    second = list(ex.batches(None))[1].position  # two pages landed, then the process died
    assert second["next"]["params"]["page"] == 3
    server.requests.clear()
    assert ids(ex, second) == list(range(11, 24))
    assert server.hits("/items")[0].query["page"] == "3"


def test_incremental_high_watermark(server):
    def route(req):
        since = req.query.get("since", "")
        return Reply(body=[i for i in ITEMS if i["updated_at"] > since])

    url = server.route("/items", route)
    ex = ApiExtractor(api(url, incremental={"param": "since", "field": "updated_at"}))
    batches = list(ex.batches(None))
    assert batches[-1].position == {"next": None, "watermark": "2024-01-23T00:00:00Z"}
    assert "since" not in server.hits("/items")[0].query
    again = list(ex.batches(batches[-1].position))
    assert server.hits("/items")[1].query["since"] == "2024-01-23T00:00:00Z"
    assert sum(len(b.frame) for b in again) == 0


def test_headers_from_env_sent_and_never_logged(server, monkeypatch, caplog):
    monkeypatch.setenv("ITEMS_TOKEN", "s3cret-token")
    url = server.route(
        "/items",
        lambda r: (
            Reply(body=ITEMS[:2])
            if r.headers.get("authorization") == "Bearer s3cret-token"
            else Reply(401, {"error": "unauthorized"})
        ),
    )
    with caplog.at_level(logging.DEBUG):
        assert ids(ApiExtractor(api(url, headers={"Authorization": "Bearer ${ITEMS_TOKEN}"}))) == [1, 2]
    assert "s3cret-token" not in caplog.text


def test_missing_header_env_is_a_clear_error(server):
    url = server.route("/items", lambda r: Reply(body=[]))
    with pytest.raises(
        Exception,
        match=r"source 'items': headers.X-Key: uses \$\{NO_SUCH_KEY_VAR\} but NO_SUCH_KEY_VAR is not set",
    ):
        list(ApiExtractor(api(url, headers={"X-Key": "${NO_SUCH_KEY_VAR}"})).batches(None))


def test_http_error_names_source_and_url(server):
    url = server.route("/items", lambda r: Reply(404, {"message": "Not Found"}))
    with pytest.raises(SourceError) as err:
        list(ApiExtractor(api(url)).batches(None))
    msg = str(err.value)
    assert msg.startswith(f"source 'items': GET {url}: HTTP 404 Not Found") and "\n" not in msg
    assert not err.value.retryable


def test_body_not_json(server):
    url = server.route(
        "/items", lambda r: Reply(body="<html>maintenance</html>", headers={"Content-Type": "text/html"})
    )
    with pytest.raises(
        SourceError, match=r"source 'items': GET .*/items: body is not JSON \(Content-Type text/html\)"
    ):
        list(ApiExtractor(api(url)).batches(None))


def test_records_path_missing(server):
    url = server.route("/items", lambda r: Reply(body={"results": []}))
    with pytest.raises(
        SourceError, match=r"records_path 'data' not found in the body \(top level: \['results'\]\)"
    ):
        list(ApiExtractor(api(url, records_path="data")).batches(None))


def test_retries_503_with_retry_after_then_succeeds(server):
    calls = []

    def route(req):
        calls.append(req.at)
        return (
            Reply(503, {"error": "busy"}, {"Retry-After": "1"}) if len(calls) < 2 else Reply(body=ITEMS[:3])
        )

    url = server.route("/items", route)
    ex = ApiExtractor(api(url))
    assert ids(ex) == [1, 2, 3]
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95  # Retry-After honoured
    assert (ex.http.requests, ex.http.retries, ex.http.statuses) == (2, 1, {"200": 1})


def test_gives_up_after_retry_budget(server):
    url = server.route("/items", lambda r: Reply(500, {"error": "boom"}))
    ex = ApiExtractor(api(url, retry={"max_retries": 2, "delay_seconds": 0.01}))
    with pytest.raises(SourceError) as err:
        list(ex.batches(None))
    assert len(server.hits("/items")) == 3 and err.value.retryable
    assert (ex.http.requests, ex.http.retries, ex.http.statuses) == (3, 2, {"500": 1})


def test_pages_grouped_into_batches_up_to_batch_rows(server):
    url = server.route(
        "/items", lambda r: Reply(body=ITEMS[(int(r.query["page"]) - 1) * 5 : int(r.query["page"]) * 5])
    )
    ex = ApiExtractor(api(url, pagination={"type": "page", "size": 5}, batch_rows=12))
    batches = list(ex.batches(None))
    assert [len(b.frame) for b in batches] == [15, 8]  # 3 pages reach 12 rows; the rest ends the pass
    assert batches[0].position["next"]["params"]["page"] == 4 and batches[0].frame["id"].tolist() == list(
        range(1, 16)
    )
    assert batches[0].location.endswith("page=1&per_page=5")


def test_nested_records_flattened_and_rate_limit_respected(server, warehouse):
    url = server.route(
        "/users",
        lambda r: Reply(
            body=[
                {"id": 1, "address": {"city": "Gwenborough", "geo": {"lat": "-37.3159"}}, "tags": ["a", "b"]},
                {"id": 2, "address": {"city": "Wisokyburgh", "geo": {"lat": "-43.9509"}}, "tags": []},
            ]
        ),
    )
    s = ApiSource(
        name="users", kind="api", url=url, primary_key=["id"], rate_limit={"calls": 2, "period_seconds": 1}
    )
    stats = ingest(s, warehouse, "r1")
    assert stats.inserted == 2 and (stats.http_requests, stats.http_statuses) == (1, {"200": 1})
    assert warehouse.pinned_schema("users", "users") == {
        "id": "integer",
        "tags": "json",
        "address__city": "string",
        "address__geo__lat": "float",
    }
    again = ingest(s, warehouse, "r2")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
