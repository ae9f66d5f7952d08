"""API source against its rate limit: a loopback server (page-paginated JSON) that itself counts requests in a
sliding window and answers 429 above the limit; the source's `rate_limit` is the same limit.

    python benchmarks/api_load.py [--calls 50 --period 1 --pages 400 --size 200] [--pg]

Prints the achieved request rate as a fraction of the limit (target >= 90%, never above: no 429, and the busiest
window the server saw holds at most `calls` requests) and records/s, through the core ingest loop.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, tempdir, timed_ingest, write_result  # noqa: E402


class Server:
    def __init__(self, calls: int, period: float, pages: int, size: int):
        self.calls, self.period, self.pages, self.size = calls, period, pages, size
        self.times: list[float] = []
        self.rejected = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body go out in two writes: Nagle would hold the body 40 ms
            )

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                now = time.monotonic()
                with outer.lock:
                    recent = len(outer.times) - bisect.bisect_right(outer.times, now - outer.period)
                    if recent >= outer.calls:
                        outer.rejected += 1
                        body, status = b'{"error": "rate limited"}', 429
                    else:
                        outer.times.append(now)
                        status = 200
                if status == 200:
                    q = parse_qs(urlparse(self.path).query)
                    page = int(q.get("page", ["1"])[0])
                    n = outer.size if page <= outer.pages else 0
                    start = (page - 1) * outer.size
                    body = json.dumps(
                        [
                            {
                                "id": start + i,
                                "name": f"item {start + i}",
                                "price": (start + i) * 0.5,
                                "active": i % 2 == 0,
                                "created": "2024-01-02T03:04:05Z",
                            }
                            for i in range(n)
                        ]
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/items"

    def busiest_window(self) -> int:
        t, best = self.times, 0
        for i, start in enumerate(t):
            best = max(best, bisect.bisect_left(t, start + self.period) - i)
        return best


def _serve(conn, calls: int, period: float, pages: int, size: int) -> None:
    """The server in a process of its own, as a real API is: in the loader's process it would compete with the
    loader for the GIL, and the benchmark would measure that contest."""
    server = Server(calls, period, pages, size)
    conn.send(server.url)
    conn.recv()
    server.httpd.shutdown()
    conn.send((server.times, server.rejected, server.busiest_window()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--period", type=float, default=1.0)
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument(
        "--pg", action="store_true", help="PostgreSQL warehouse (default: SQLite in a temp folder)"
    )
    args = ap.parse_args()

    from etl_assets.config_load import load_sources

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(
        target=_serve, args=(child, args.calls, args.period, args.pages, args.size), daemon=True
    )
    proc.start()
    url = parent.recv()
    root = tempdir("etl-bench-api-")
    import yaml

    (root / "sources.yaml").write_text(
        yaml.safe_dump(
            {
                "items": {
                    "kind": "api",
                    "url": url,
                    "primary_key": ["id"],
                    "pagination": {
                        "type": "page",
                        "page_param": "page",
                        "size_param": "per_page",
                        "size": args.size,
                    },
                    "rate_limit": {"calls": args.calls, "period_seconds": args.period},
                }
            }
        )
    )
    spec = load_sources(str(root / "sources.yaml"))["items"]
    try:
        stats, wall = timed_ingest(spec, root, "bench-api", args.pg)
    finally:
        parent.send("stop")
        times, rejected, busiest = parent.recv()
        proc.join()
    n = len(times)
    # the limit allows `calls` at once, then `calls` per period: the fastest possible run of n requests
    best = max(0.0, (n - args.calls) / args.calls * args.period)
    span = times[-1] - times[0] if n > 1 else 0.0
    rate = (n - 1) / span if span else float("nan")
    limit = args.calls / args.period
    result = {
        "calls": args.calls,
        "period_seconds": args.period,
        "requests": n,
        "rejected_429": rejected,
        "busiest_window": busiest,
        "records": stats.processed,
        "inserted": stats.inserted,
        "wall_seconds": wall,
        "request_span_seconds": span,
        "achieved_rate": rate,
        "limit_rate": limit,
        "fraction_of_limit": rate / limit,
        "fastest_allowed_span": best,
        "records_per_second": stats.processed / wall,
        "warehouse": "postgresql" if args.pg else "sqlite",
        "rate_limit_waits": stats.rate_limit_waits,
    }
    print_table(
        f"API source, limit {args.calls} requests / {args.period:g}s, {args.pages} pages x {args.size} records",
        [
            ("requests", n),
            ("answered 429 (above the limit)", rejected),
            ("busiest window (requests)", result["busiest_window"]),
            ("achieved request rate /s (first to last request)", rate),
            ("fraction of the limit", f"{rate / limit:.1%}"),
            ("records", stats.processed),
            ("wall seconds", wall),
            ("records/s", stats.processed / wall),
        ],
        ("what", "value"),
    )
    write_result("api_load", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
