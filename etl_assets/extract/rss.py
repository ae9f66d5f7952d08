"""RSS/Atom feeds through feedparser: conditional GET, a stable entry id, entries flattened to columns."""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import feedparser
import pandas as pd

from .. import redaction
from ..config import RssSource
from ..errors import SourceError
from ..http import SourceHttp
from ..logs import event_fields
from ..origin import OriginPolicy
from .base import Batch, ExtractorStats, FeedPosition, content_id, http_stats

log = logging.getLogger(__name__)


def _iso(parsed: Any) -> str | None:
    # feedparser gives UTC struct_time; timegm keeps it UTC.
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC).isoformat() if parsed else None


def entry_id(entry: Any) -> str:
    """guid/id, else link, else a hash of title + date: stable across polls of the same entry."""
    if entry.get("id"):
        return str(entry["id"])
    if entry.get("link"):
        return str(entry["link"])
    basis = f"{entry.get('title', '')}|{entry.get('published', entry.get('updated', ''))}"
    return "sha1:" + hashlib.sha1(basis.encode("utf-8")).hexdigest()


def flatten(entry: Any) -> dict[str, Any]:
    return {
        "id": entry_id(entry),
        "title": entry.get("title"),
        "link": entry.get("link"),
        "summary": entry.get("summary"),
        "published": _iso(entry.get("published_parsed")),
        "updated": _iso(entry.get("updated_parsed")),
        "author": entry.get("author"),
        "tags": json.dumps(
            [t.get("term") for t in entry.get("tags", []) if t.get("term")], ensure_ascii=False
        ),
    }


def parse_feed(source: str, place: str, content: bytes, headers: dict[str, str] | None = None) -> Any:
    """Parse bytes as a feed; refuse what is not one, with a line naming the place."""
    parsed = feedparser.parse(content, response_headers=headers or {})
    if not parsed.entries and not parsed.version:
        why = parsed.get("bozo_exception") or "no RSS/Atom elements"
        raise SourceError(
            source,
            place,
            f"not an RSS/Atom feed: {why}".replace("\n", " "),
            "check the URL points at the feed itself",
        )
    if parsed.bozo:
        log.warning(
            "source %s: %s is not well-formed (%s); loading the %d entries feedparser recovered",
            source,
            place,
            parsed.get("bozo_exception"),
            len(parsed.entries),
        )
    return parsed


class RssExtractor:
    def __init__(self, spec: RssSource):
        self.spec = spec
        self.http = (
            SourceHttp(
                spec.name,
                spec.retry,
                spec.timeout_seconds,
                policy=OriginPolicy(spec.url, spec.allowed_hosts),
                max_bytes=spec.max_response_bytes,
            )
            if spec.url.startswith(("http://", "https://"))
            else None
        )

    def stats(self) -> ExtractorStats:
        return http_stats(self.http)

    def _fetch(self, state: dict[str, Any]) -> tuple[bytes | None, FeedPosition | None, dict[str, str]]:
        """Return (content, validators for the checkpoint, response headers), or Nones when unchanged."""
        if self.http is None:
            path = Path(self.spec.url)
            if not path.is_file():
                raise SourceError(
                    self.spec.name, f"feed file {path}", "not found", "check `url` in sources.yaml"
                )
            with path.open("rb") as f:
                content = f.read(self.spec.max_response_bytes + 1)
            if len(content) > self.spec.max_response_bytes:
                raise SourceError(
                    self.spec.name,
                    f"feed file {path}",
                    f"larger than max_response_bytes={self.spec.max_response_bytes:,}",
                    "raise max_response_bytes if the feed is meant to be that large",
                )
            digest = hashlib.sha256(content).hexdigest()
            if digest == state.get("sha256"):
                return None, None, {}
            return content, {"sha256": digest}, {}
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("modified"):
            headers["If-Modified-Since"] = state["modified"]
        resp = self.http.get(self.spec.url, headers=headers, ok=(200, 304))
        if resp.status_code == 304:
            return None, None, {}
        validators = {
            k: v
            for k, v in (("etag", resp.headers.get("ETag")), ("modified", resp.headers.get("Last-Modified")))
            if v
        }
        digest = hashlib.sha256(resp.content).hexdigest()
        if not validators and digest == state.get("sha256"):
            return None, None, {}  # a server without validators: an unchanged body is still no news
        # validators holds etag and modified, those the server sent
        position = cast(FeedPosition, {**validators, "sha256": digest})
        return resp.content, position, {k.lower(): v for k, v in resp.headers.items()}

    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        state = dict(checkpoint or {})
        content, validators, headers = self._fetch(state)
        if content is None or validators is None:
            log.info("source %s: feed %s unchanged since the last run", self.spec.name, self.spec.url)
            return
        content, echoed = redaction.scrub_bytes(content)
        if echoed:
            log.warning(
                "source %s: feed %s held a configured secret; it lands as ***",
                self.spec.name,
                self.spec.url,
                extra=event_fields("secret_in_answer", url=self.spec.url),
            )
        parsed = parse_feed(self.spec.name, f"feed {self.spec.url}", content, headers)
        rows = [flatten(e) for e in parsed.entries]
        frame = pd.DataFrame(rows, columns=list(self.spec.columns or {}) or None)
        frame.index = pd.RangeIndex(1, len(frame) + 1)
        ids = (
            None if self.spec.primary_key else [content_id(r) for r in rows]
        )  # `primary_key: []`: by content
        yield Batch(
            frame=frame,
            position=redaction.conceal(validators),
            location=redaction.redact(self.spec.url),
            row_ids=ids,
        )
