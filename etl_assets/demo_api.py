"""The sample API the shipped sources.yaml reads: two JSON APIs with different pagination and a feed.

    GET /api/customers?page=N&per_page=S   page numbers; body {"data": [...], "page": N, "total": T}
    GET /api/events?cursor=C&limit=L&since=T   opaque cursor; body {"events": [...], "next_cursor": C|null}
    GET /feeds/releases.xml                 RSS 2.0 with ETag / Last-Modified (answers 304 when unchanged)

Standard library only, so it starts in a blink; it serves loopback by default.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)
# examples/ beside the package in a checkout; a wheel install (the image) serves the one in the working directory
EXAMPLES = next(
    (p for p in (Path(__file__).resolve().parent.parent / "examples", Path.cwd() / "examples") if p.is_dir()),
    Path("examples"),
)


class DemoData:
    def __init__(self, root: Path = EXAMPLES):
        self.customers = json.loads((root / "api" / "customers.json").read_text(encoding="utf-8"))
        self.events = json.loads((root / "api" / "events.json").read_text(encoding="utf-8"))
        feed = root / "feeds" / "releases.xml"
        self.feed = feed.read_bytes()
        self.feed_etag = '"' + hashlib.sha256(self.feed).hexdigest()[:16] + '"'
        self.feed_modified = email.utils.formatdate(feed.stat().st_mtime, usegmt=True)


def _int(q: dict, name: str, default: int, lo: int = 0, hi: int = 10_000) -> int:
    try:
        return max(lo, min(hi, int(q.get(name, [default])[0])))
    except ValueError:
        return default


def make_handler(data: DemoData) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = (
            True  # headers and body go out in two writes: Nagle would hold the body 40 ms
        )

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("demo-api: " + fmt, *args)

        def _send(
            self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None
        ):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj: object, headers: dict | None = None) -> None:
            self._send(200, json.dumps(obj).encode(), headers=headers)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlparse(self.path)
            q = parse_qs(url.query)
            if url.path == "/api/customers":
                page, size = _int(q, "page", 1, 1), _int(q, "per_page", 20, 1, 100)
                rows = data.customers[(page - 1) * size : page * size]
                return self._json(
                    {"data": rows, "page": page, "per_page": size, "total": len(data.customers)}
                )
            if url.path == "/api/events":
                since = q.get("since", [""])[0]
                rows = [e for e in data.events if e["occurred_at"] > since]
                start = int(base64.urlsafe_b64decode(q["cursor"][0]).decode()) if q.get("cursor") else 0
                limit = _int(q, "limit", 25, 1, 100)
                window = rows[start : start + limit]
                more = start + limit < len(rows)
                cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
                return self._json({"events": window, "next_cursor": cursor})
            if url.path == "/feeds/releases.xml":
                headers = {"ETag": data.feed_etag, "Last-Modified": data.feed_modified}
                if self.headers.get("If-None-Match") == data.feed_etag:
                    return self._send(304, b"", headers=headers)
                return self._send(200, data.feed, "application/rss+xml", headers)
            if url.path == "/health":
                return self._json({"status": "ok"})
            self._send(404, json.dumps({"error": f"no route {url.path}"}).encode())

        do_HEAD = do_GET

    return Handler


def serve(host: str = "127.0.0.1", port: int = 8765, root: Path = EXAMPLES) -> ThreadingHTTPServer:
    """Start the server on a daemon thread and return it (port 0 picks a free port)."""
    server = ThreadingHTTPServer((host, port), make_handler(DemoData(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-api", daemon=True).start()
    return server
