import json

import pytest

from etl_assets.config import RssSource
from etl_assets.errors import SourceError
from etl_assets.extract.rss import RssExtractor
from etl_assets.pipeline import ingest

from ..loopback import Reply

FEED = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>t</title><link>http://example.com/</link><description>d</description>
<item><title>With guid</title><guid>urn:a</guid><link>http://example.com/a</link>
  <pubDate>Thu, 01 Jan 2004 19:48:21 GMT</pubDate><category>x</category><category>y</category>
  <author>me@example.com (Me)</author><description>first</description></item>
<item><title>Only link</title><link>http://example.com/b</link></item>
<item><title>Nothing else</title><pubDate>Fri, 02 Jan 2004 10:00:00 GMT</pubDate></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title><id>urn:feed</id><updated>2024-03-01T00:00:00Z</updated>
<entry><title>E1</title><id>urn:e1</id><updated>2024-03-01T12:00:00+02:00</updated>
<link href="http://example.com/e1"/><summary>s1</summary><author><name>Ann</name></author></entry>
</feed>"""


def rss(url, **kw):
    return RssSource(name="news", kind="rss", url=url, retry={"max_retries": 0}, **kw)


def test_entries_flattened_with_stable_ids(tmp_path):
    path = tmp_path / "f.xml"
    path.write_text(FEED)
    frame = next(RssExtractor(rss(str(path))).batches(None)).frame
    assert list(frame.columns) == ["id", "title", "link", "summary", "published", "updated", "author", "tags"]
    first, second, third = frame.to_dict("records")
    assert first["id"] == "urn:a" and json.loads(first["tags"]) == ["x", "y"]
    assert first["published"] == "2004-01-01T19:48:21+00:00" and first["author"] == "me@example.com (Me)"
    assert second["id"] == "http://example.com/b"
    assert third["id"].startswith("sha1:")  # no guid, no link: a hash of title + date
    again = next(RssExtractor(rss(str(path))).batches(None)).frame
    assert again["id"].tolist() == frame["id"].tolist()


def test_atom_dates_normalised_to_utc(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(ATOM)
    row = next(RssExtractor(rss(str(path))).batches(None)).frame.iloc[0]
    assert (row["id"], row["updated"], row["author"], row["link"]) == (
        "urn:e1",
        "2024-03-01T10:00:00+00:00",
        "Ann",
        "http://example.com/e1",
    )


def test_conditional_get_etag_and_last_modified(server):
    def route(req):
        if req.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"")
        return Reply(
            body=FEED,
            headers={
                "Content-Type": "application/rss+xml",
                "ETag": '"v1"',
                "Last-Modified": "Wed, 01 May 2024 00:00:00 GMT",
            },
        )

    url = server.route("/feed", route)
    ex = RssExtractor(rss(url))
    first = list(ex.batches(None))
    assert len(first) == 1 and len(first[0].frame) == 3
    assert first[0].position["etag"] == '"v1"'
    assert list(ex.batches(first[0].position)) == []
    second = server.hits("/feed")[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Wed, 01 May 2024 00:00:00 GMT"


def test_not_a_feed_is_one_clear_line(server):
    url = server.route(
        "/feed",
        lambda r: Reply(body="<html><body>Hello</body></html>", headers={"Content-Type": "text/html"}),
    )
    with pytest.raises(SourceError) as err:
        list(RssExtractor(rss(url)).batches(None))
    assert str(err.value).startswith(f"source 'news': feed {url}: not an RSS/Atom feed")
    assert "\n" not in str(err.value)


def test_missing_feed_file(tmp_path):
    with pytest.raises(SourceError, match=r"source 'news': feed file .*nope.xml: not found"):
        list(RssExtractor(rss(str(tmp_path / "nope.xml"))).batches(None))


def test_feed_upsert_by_entry_id(tmp_path, warehouse):
    path = tmp_path / "f.xml"
    path.write_text(FEED)
    s = rss(str(path))
    assert ingest(s, warehouse, "r1").inserted == 3
    assert ingest(s, warehouse, "r2").processed == 0  # unchanged file: not even parsed
    path.write_text(FEED.replace("first", "first, edited"))
    again = ingest(s, warehouse, "r3")
    assert (again.inserted, again.updated) == (0, 1)
    with warehouse.engine.connect() as c:
        assert c.exec_driver_sql("SELECT summary FROM news WHERE id = 'urn:a'").scalar() == "first, edited"
