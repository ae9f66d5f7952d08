"""A real HTTP server on 127.0.0.1 for tests: routes are functions, every request is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    # When set, called with the request handler instead of the normal write: the route writes the raw response
    # itself (a trickling socket, a custom Content-Encoding, a broken status line). The connection then closes.
    raw: Callable[[BaseHTTPRequestHandler], None] | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.headers.get("Content-Type", "text/plain")
        return json.dumps(self.body).encode(), "application/json"


Route = Callable[[Seen], Reply]


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go out in two writes: Nagle would hold the body 40 ms
            )

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                seen = Seen(
                    url.path,
                    {k: v[-1] for k, v in parse_qs(url.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    time.monotonic(),
                )
                owner.requests.append(seen)
                route = owner.routes.get(url.path)
                reply = route(seen) if route else Reply(404, {"error": "no route"})
                if reply.raw is not None:
                    self.close_connection = True
                    try:
                        reply.raw(self)
                        self.wfile.flush()
                    except OSError:  # the client hung up mid-answer: what a test of a hostile server expects
                        pass
                    return
                body, ctype = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    if k.lower() != "content-type":
                        self.send_header(k, v)
                self.end_headers()
                if reply.status != 304:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def route(self, path: str, fn: Route) -> str:
        self.routes[path] = fn
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]


def use_tls(server: LoopbackServer, certfile: str, keyfile: str) -> None:
    """Serve `server` over TLS from now on (before its first request): its `base` becomes https://."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    server.httpd.socket = ctx.wrap_socket(server.httpd.socket, server_side=True)
    server.base = f"https://127.0.0.1:{server.port}"
