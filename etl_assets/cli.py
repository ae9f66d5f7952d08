"""The `etl-assets` command line."""

from __future__ import annotations

import argparse
import sys
import time

from .config import ConfigError, load_sources
from .logs import configure_logging


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        specs = load_sources(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, spec in specs.items():
        where = getattr(spec, "path", None) or spec.url
        print(f"ok  {name:<20} {spec.kind:<4} -> table {spec.table_name:<20} {where}")
    print(f"{len(specs)} source(s) valid")
    return 0


def cmd_demo_api(args: argparse.Namespace) -> int:
    from .demo_api import serve

    server = serve(args.host, args.port)
    host, port = server.server_address[:2]
    print(f"demo API on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from .warehouse import SYSTEM_TABLES, Warehouse

    wh = Warehouse(args.url)
    counts = wh.row_counts()
    print(f"warehouse {wh!r}")
    for name, n in sorted(counts.items(), key=lambda kv: (kv[0] in SYSTEM_TABLES, kv[0])):
        print(f"  {name:<24} {n:>10} rows")
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(prog="etl-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a sources file; exit 0 when valid, 1 otherwise")
    p.add_argument("file", nargs="?", help="sources file (default: $ETL_SOURCES or sources.yaml)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("demo-api", help="serve the sample APIs and feed of the shipped sources.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_demo_api)

    p = sub.add_parser("tables", help="rows per warehouse table")
    p.add_argument("--url", help="SQLAlchemy URL (default: $ETL_WAREHOUSE_URL or the SQLite file under .etl/)")
    p.set_defaults(func=cmd_tables)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
