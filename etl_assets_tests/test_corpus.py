"""The corpus suite: externally written material read in place from ../shared/corpus (never copied here).

feeds/     feedparser's own test feeds, served over loopback HTTP, checked against their own `Expect:` lines
           and landed in PostgreSQL;
api/       real recorded API response shapes (GitHub Link headers, Reddit and Slack cursors, Stripe has_more,
           SWAPI next URLs, json-server pages/offsets) served through every pagination type;
csv-messy/ messy real-world CSVs: each loads, or quarantines with reasons, or fails with one clear line.
Without ../shared beside the clone the suite skips with the reason; .ci/run sets ETL_REQUIRE_CORPUS=1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from urllib.parse import urlencode

import pytest

from etl_assets.config import ApiSource, CsvSource, RssSource
from etl_assets.errors import SourceError
from etl_assets.extract.api import ApiExtractor
from etl_assets.extract.rss import RssExtractor
from etl_assets.pipeline import ingest

from .conftest import CORPUS, corpus_dir, fresh_pg_warehouse
from .loopback import Reply

# -- feeds ------------------------------------------------------------------------------------------------------

_MANIFEST = CORPUS / "feeds" / "manifest.json"
FEEDS = json.loads(_MANIFEST.read_text()) if _MANIFEST.exists() else []


def _skip_unless(entry: dict) -> str | None:
    cond = entry.get("skip_unless")
    if not cond:
        return None
    try:
        eval(cond)  # the corpus's own condition, e.g. __import__('chardet')
    except Exception as exc:
        return f"{entry['path']}: SkipUnless {cond} not met here ({type(exc).__name__})"
    return None


def _guessed_by_chardet(entry: dict, parsed) -> str | None:
    """The manifest's verdicts were measured without chardet. Installed (the CSV reader's detector), it is what
    feedparser decodes a document with when its declared encoding fails: such a document's text is chardet's
    guess here, not the fixed fallback the Expect line was written for."""
    import feedparser
    import feedparser.encodings

    if feedparser.encodings.lazy_chardet_encoding and isinstance(
        parsed.get("bozo_exception"), feedparser.CharacterEncodingOverride
    ):
        return (
            f"{entry['path']}: {parsed.bozo_exception} (chardet's guess; the Expect line assumes no chardet)"
        )
    return None


@pytest.fixture(scope="module")
def feed_warehouse(request):
    """One database for all the feeds (a table each): ~150 databases would cost more than the feeds."""
    yield from fresh_pg_warehouse(request.getfixturevalue("pg_server"))


def test_corpus_present():
    corpus_dir("feeds")
    corpus_dir("api")
    corpus_dir("csv-messy")
    assert len(FEEDS) >= 140


@pytest.mark.parametrize("entry", FEEDS, ids=[e["path"] for e in FEEDS] or None)
def test_feed_expectation_through_our_http_path(entry, server, feed_warehouse):
    corpus_dir("feeds")
    content = (CORPUS / "feeds" / entry["path"]).read_bytes()
    headers = dict(entry.get("http_headers") or {"Content-Type": "application/xml"})
    url = server.route("/feed.xml", lambda r: Reply(body=content, headers=headers))
    spec = RssSource(
        name="feed_" + hashlib.md5(entry["path"].encode()).hexdigest()[:12],
        kind="rss",
        url=url,
        retry={"max_retries": 0},
    )
    ex = RssExtractor(spec)
    fetched, _, resp_headers = ex._fetch({})
    assert fetched == content  # the bytes reach feedparser untouched

    import feedparser

    parsed = feedparser.parse(fetched, response_headers=resp_headers)
    reason = _skip_unless(entry) or _guessed_by_chardet(entry, parsed)
    if entry.get("expect") and not reason and entry.get("passes_with_feedparser_6_0_14_from_bytes"):
        assert eval(entry["expect"], {"datetime": datetime}, parsed), entry["description"]
        if entry["path"].startswith("wellformed/"):
            assert not parsed.bozo, parsed.get("bozo_exception")

    # and the feed lands: one row per distinct entry id, or one clear line when it is no feed at all
    try:
        stats = ingest(spec, feed_warehouse, "corpus")
    except SourceError as exc:
        assert not parsed.entries and "not an RSS/Atom feed" in str(exc) and "\n" not in str(exc)
        return
    ids = {row["id"] for row in (_flat(e) for e in parsed.entries)}
    assert stats.inserted == len(ids)
    assert feed_warehouse.row_count(spec.name) == len(ids)
    if reason:
        pytest.skip(reason)


def _flat(entry):
    from etl_assets.extract.rss import flatten

    return flatten(entry)


def test_feeds_without_guid_get_stable_ids():
    corpus_dir("feeds")
    import feedparser

    from etl_assets.extract.rss import entry_id

    for name in ("wellformed/rss/item_title.xml", "wellformed/rss/item_description.xml"):
        content = (CORPUS / "feeds" / name).read_bytes()
        first = [entry_id(e) for e in feedparser.parse(content).entries]
        assert first and first == [entry_id(e) for e in feedparser.parse(content).entries]


# -- APIs -------------------------------------------------------------------------------------------------------


def _api(name, url, **kw):
    return ApiSource(name=name, kind="api", url=url, retry={"max_retries": 0}, **kw)


def _records(spec):
    return [r for b in ApiExtractor(spec).batches(None) for r in b.frame.to_dict("records")]


def test_github_link_header_pages(server):
    root = corpus_dir("api", "github", "paginate-issues", "pages")
    pages = [json.loads((root / f"page{i}.json").read_text()) for i in range(1, 6)]

    def route(req):
        page = pages[int(req.query.get("page", "1")) - 1]
        link = page["headers"].get("link", "").replace("https://api.github.com", server.base)
        return Reply(page["status"], page["body"], {"Link": link} if link else {})

    server.route("/repos/octokit-fixture-org/paginate-issues/issues", route)
    server.route("/repositories/1000/issues", route)  # GitHub's Link URLs switch to the numeric form
    url = f"{server.base}/repos/octokit-fixture-org/paginate-issues/issues?per_page=3"
    rows = _records(_api("gh", url, pagination={"type": "link_header"}))
    assert len(rows) == 13 == len({r["id"] for r in rows})
    assert [len(p["body"]) for p in pages] == [3, 3, 3, 3, 1]
    assert len(server.requests) == 5


def test_reddit_listing_cursor(server, warehouse):
    root = corpus_dir("api", "reddit", "pages")
    pages = [
        json.loads((root / f"TestLiveThread.test_updates.page{i}.json").read_text())["body"]
        for i in (1, 2, 3)
    ]
    by_after = {None: pages[0], pages[0]["data"]["after"]: pages[1], pages[1]["data"]["after"]: pages[2]}
    url = server.route("/live/ukaeu1ik4sw5", lambda r: Reply(body=by_after[r.query.get("after")]))
    spec = _api(
        "reddit_live",
        url,
        records_path="data.children",
        primary_key=["data__id"],
        pagination={"type": "cursor", "cursor_param": "after", "cursor_path": "data.after"},
    )
    stats = ingest(spec, warehouse, "r1")
    assert (stats.processed, stats.inserted) == (200, 200)
    assert [r.query.get("after") for r in server.requests] == [
        None,
        pages[0]["data"]["after"],
        pages[1]["data"]["after"],
    ]
    assert ingest(spec, warehouse, "r2").inserted == 0


def test_reddit_empty_string_cursor_ends(server):
    root = corpus_dir("api", "reddit", "pages")
    p1, p2 = (
        json.loads((root / f"TestAnnouncementHelper.test_call__pagination.page{i}.json").read_text())["body"]
        for i in (1, 2)
    )
    url = server.route("/announcements", lambda r: Reply(body=p2 if r.query.get("after") else p1))
    rows = _records(
        _api(
            "ann",
            url,
            records_path="data",
            pagination={"type": "cursor", "cursor_param": "after", "cursor_path": "after"},
        )
    )
    assert len(rows) == len(p1["data"]) + len(p2["data"]) and len(server.requests) == 2


@pytest.mark.parametrize(
    "first, follow, records, cursor_path",
    [
        (
            "web_response_conversations_list_pagination.json",
            {
                "has_page2": "web_response_conversations_list_pagination_has_page2.json",
                "has_page3": "web_response_conversations_list.json",
            },
            "channels",
            "response_metadata.next_cursor",
        ),
        (
            "web_response_users_list_pagination.json",
            {"1": "web_response_users_list_pagination_1.json"},
            "members",
            "response_metadata.next_cursor",
        ),  # an integer cursor
        (
            "web_response_admin_convo_pagination.json",
            {"1": "web_response_admin_convo_pagination_1.json"},
            "conversations",
            "next_cursor",
        ),  # the cursor at the top level
    ],
)
def test_slack_cursor_variants(server, first, follow, records, cursor_path):
    root = corpus_dir("api", "slack")

    def route(req):
        cur = req.query.get("cursor")
        return Reply(body=json.loads((root / (follow[cur] if cur else first)).read_text()))

    url = server.route("/api/slack.method", route)
    rows = _records(
        _api(
            "slack",
            url,
            records_path=records,
            pagination={"type": "cursor", "cursor_param": "cursor", "cursor_path": cursor_path},
        )
    )
    expected = sum(len(json.loads((root / f).read_text())[records]) for f in [first, *follow.values()])
    assert len(rows) == expected and len(server.requests) == len(follow) + 1


def test_stripe_has_more_starting_after(server):
    root = corpus_dir("api", "stripe")
    links = json.loads((root / "list_objects_extracted.json").read_text())["resources.file.links"]
    objects = links["data"]  # 6 real file_link objects

    def route(req):
        after, limit = req.query.get("starting_after"), int(req.query["limit"])
        start = next((i + 1 for i, o in enumerate(objects) if o["id"] == after), 0)
        page = objects[start : start + limit]
        return Reply(body={**links, "data": page, "has_more": start + limit < len(objects)})

    url = server.route("/v1/file_links", route)
    spec = _api(
        "stripe",
        url,
        params={"limit": 2},
        records_path="data",
        pagination={
            "type": "cursor",
            "cursor_param": "starting_after",
            "cursor_path": "$last.id",
            "has_more_path": "has_more",
        },
    )
    rows = _records(spec)
    assert [r["id"] for r in rows] == [o["id"] for o in objects] and len(server.requests) == 3


def test_swapi_next_url(server):
    root = corpus_dir("api", "swapi")
    page1 = json.loads((root / "people_page1_trimmed.json").read_text())

    def route(req):
        if req.query.get("page") == "2":  # the trimmed capture has one page: the next one ends the chain
            return Reply(body={**page1, "next": None, "previous": f"{server.base}/api/people/"})
        return Reply(body={**page1, "next": page1["next"].replace("https://swapi.co", server.base)})

    url = server.route("/api/people/", route)
    rows = _records(_api("swapi", url, records_path="results", pagination={"type": "next_url"}))
    assert len(rows) == 2 * len(page1["results"]) and rows[0]["name"] == "Luke Skywalker"


@pytest.fixture
def json_server(server):
    """jsonplaceholder's real data served with json-server's documented _page/_limit, _start and Link header."""
    posts = json.loads((corpus_dir("api", "jsonplaceholder") / "posts.json").read_text())

    def route(req):
        limit = int(req.query.get("_limit", "10"))
        if "_start" in req.query:
            start = int(req.query["_start"])
            return Reply(body=posts[start : start + limit])
        page = int(req.query.get("_page", "1"))
        last = -(-len(posts) // limit)
        links = [
            f'<{server.base}/posts?{urlencode({"_page": p, "_limit": limit})}>; rel="{rel}"'
            for rel, p in (("first", 1), ("next", page + 1), ("last", last))
            if rel != "next" or page < last
        ]
        return Reply(
            body=posts[(page - 1) * limit : page * limit],
            headers={"Link": ", ".join(links), "X-Total-Count": str(len(posts))},
        )

    return server.route("/posts", route), posts


def test_jsonplaceholder_page_offset_and_link(json_server, warehouse):
    url, posts = json_server
    page = _api(
        "posts",
        url,
        primary_key=["id"],
        pagination={"type": "page", "page_param": "_page", "size_param": "_limit", "size": 30},
    )
    offset = _api(
        "posts",
        url,
        pagination={"type": "offset", "offset_param": "_start", "limit_param": "_limit", "limit": 30},
    )
    link = _api("posts", url + "?_page=1&_limit=30", pagination={"type": "link_header"})
    for spec in (page, offset, link):
        assert [r["id"] for r in _records(spec)] == [p["id"] for p in posts]
    assert ingest(page, warehouse, "r1").inserted == 100
    assert warehouse.row_count("posts") == 100


def test_hackernews_item_without_pagination(server):
    root = corpus_dir("api", "hackernews")
    item = json.loads((root / "item_8863.json").read_text())
    url = server.route("/v0/item/8863.json", lambda r: Reply(body=item))
    # `records_path: ""` expects a list: an object is refused in one line that says how to take it as one record
    with pytest.raises(
        SourceError, match=r"the body is an object, not a list of records.*records_path: '\.'"
    ):
        _records(_api("hn", url))
    rows = _records(_api("hn", url, records_path="."))
    assert len(rows) == 1 and rows[0]["id"] == 8863 and rows[0]["kids"] == item["kids"]


# -- messy CSVs -------------------------------------------------------------------------------------------------

_CSV_DIR = CORPUS / "csv-messy"
CSVS = (
    sorted(p.name for p in _CSV_DIR.iterdir() if p.suffix in (".csv", ".tsv", ".psv", ".ssv"))
    if _CSV_DIR.exists()
    else []
)


@pytest.mark.parametrize("name", CSVS)
def test_messy_csv_loads_or_quarantines_never_crashes(name, pg_warehouse):
    corpus_dir("csv-messy")
    table = re.sub(r"\W", "_", name.lower())
    spec = CsvSource(name=table, kind="csv", path=str(_CSV_DIR / name), chunk_rows=50)
    try:
        stats = ingest(spec, pg_warehouse, "corpus")
    except SourceError as exc:
        assert str(exc).startswith(f"source '{table}': ") and "\n" not in str(exc)
        return
    assert stats.processed == stats.inserted + stats.failed  # every row lands or is quarantined
    assert pg_warehouse.row_count(table) == stats.inserted
    assert pg_warehouse.row_count("etl_quarantine") == stats.failed
    again = ingest(spec, pg_warehouse, "corpus-2")
    assert again.processed == 0  # each file once


@pytest.mark.parametrize(
    "name, columns, first",
    [
        (
            "simple.psv",
            [
                "Year",
                "New dwellings",
                "Other dwellings",
                "All dwellings",
                "First time buyers",
                "Former owner occupiers",
            ],
            "1986",
        ),
        ("simple.ssv", ["date", "temperature", "place"], "2011-01-01"),
        ("utf8bom.csv", None, None),
        ("utf-16le_encoded.csv", None, None),
        ("example.tsv", None, "2012-06-22 00:00:00"),
    ],
)
def test_messy_csv_dialects_detected(name, columns, first):
    path = corpus_dir("csv-messy") / name
    from etl_assets.extract.csv import CsvExtractor

    frame = next(CsvExtractor(CsvSource(name="t", kind="csv", path=str(path))).batches(None)).frame
    if columns:
        assert list(frame.columns) == columns
    if first:
        assert frame.iloc[0, 0] == first
    assert not any(str(c).startswith("\ufeff") for c in frame.columns)
    assert len(frame.columns) > 1 or name == "utf8bom.csv"
    if name == "utf-16le_encoded.csv":
        assert list(frame.columns)[:2] == ["Organisation_code", "Organisation_name"]
