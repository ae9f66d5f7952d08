"""The `etl-assets` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .arrow_pool import configure_arrow
from .config import ConfigError, SourceSpec
from .config_load import load_sources
from .logs import configure_logging
from .redaction import redact


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        # Header variables too: `ingest` and Dagster expand them per run, validate says now whether runs here work.
        specs = load_sources(args.file, header_env=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, spec in specs.items():
        where = redact(spec.location)
        print(f"ok  {name:<20} {spec.kind:<4} -> table {spec.table_name:<20} {where}")
    print(f"{len(specs)} source(s) valid")
    return 0


def _sources(path: str | None, names: list[str]) -> dict[str, SourceSpec] | None:
    """The valid specs of the sources file, or None after printing why not (bad file, an invalid or unknown
    source among `names`). An invalid source nobody asked for does not stop the others; its lines are printed."""
    try:
        specs, invalid = load_sources(path, lenient=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    for name, lines in invalid.items():
        if not names or name in names:
            print("\n".join(lines), file=sys.stderr)
    if any(n in invalid for n in names):
        return None
    if invalid and not names:
        print(f"skipping invalid source(s) {sorted(invalid)}; the others run", file=sys.stderr)
    unknown = [n for n in names if n not in specs and n not in invalid]
    if unknown:
        print(f"unknown source(s) {unknown}; sources: {', '.join(specs)}", file=sys.stderr)
        return None
    return specs


def cmd_ingest(args: argparse.Namespace) -> int:
    """Run sources through the ingest loop without Dagster (scripts, benchmarks, debugging)."""
    import uuid

    import sqlalchemy as sa

    from .errors import SourceError
    from .pipeline import ingest
    from .warehouse import Warehouse, database_error

    specs = _sources(args.sources, args.source)
    if specs is None:
        return 2
    names = args.source or list(specs)
    try:
        wh = Warehouse(args.url)
    except sa.exc.SQLAlchemyError as exc:
        print(
            database_error(
                names[0] if len(names) == 1 else "*", redact(args.url or "ETL_WAREHOUSE_URL"), exc
            ),
            file=sys.stderr,
        )
        return 1
    run_id = args.run_id or f"cli-{uuid.uuid4()}"
    for name in names:
        try:
            stats = ingest(specs[name], wh, run_id)
        except SourceError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(
            f"{name}: {stats.processed} processed, {stats.inserted} inserted, {stats.updated} updated, "
            f"{stats.failed} quarantined in {stats.duration_seconds:.2f}s",
            flush=True,
        )
    return 0


def sample_file(spec: SourceSpec, path: str, rows: int = 1000):
    """The first batch a run would read from this file: a CSV through the source's own extractor (its dialect
    detection and reader), a JSON file of records as the API extractor frames a page. A header-only CSV gives its
    header (a run has no rows to compare then)."""
    import json

    import pandas as pd

    from .config import ApiSource, CsvSource
    from .extract.pagination import dig

    if path.lower().endswith(".json"):
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        records = dig(body, spec.records_path if isinstance(spec, ApiSource) else "")
        records = records[:rows] if isinstance(records, list) else [records]
        from .extract.api import records_frame

        return records_frame([r if isinstance(r, dict) else {"value": r} for r in records], spec.name, path)
    from .extract.csv import CsvExtractor

    csv_spec = spec if isinstance(spec, CsvSource) else CsvSource(name=spec.name, kind="csv", path=path)
    extractor = CsvExtractor(csv_spec)
    frame = extractor.first_batch(Path(path))
    if len(frame.columns):
        return frame
    encoding, delimiter = extractor.dialect(Path(path))
    return pd.read_csv(path, sep=delimiter, encoding=encoding, dtype=str, nrows=0)


def cmd_drift_check(args: argparse.Namespace) -> int:
    """Exit 0: nothing would block the load; 1: the load would be stopped; 2: usage or read error."""
    import json

    from .column_names import column_name
    from .errors import SourceError
    from .reconcile import Reconciler, verdict
    from .warehouse import Warehouse

    specs = _sources(args.sources, [args.source])
    if specs is None:
        return 2
    spec = specs[args.source]
    try:
        frame = sample_file(spec, args.file)
    except Exception as exc:  # unreadable for any reason: a usage error, said in one line
        print(
            f"source '{spec.name}': file {args.file}: cannot read: {exc}".replace("\n", " "), file=sys.stderr
        )
        return 2
    frame = frame.rename(columns={c: column_name(c) for c in frame.columns})
    dup = list(frame.columns[frame.columns.duplicated()])
    if dup:  # a run stops on this before comparing anything
        print(
            SourceError(
                spec.name,
                args.file,
                f"duplicate column names {dup}",
                "rename the columns in the source or use `column_map`",
            ),
            file=sys.stderr,
        )
        return 1
    try:  # what a run starts from: the pinned schema, accepted renames and last load's profiles (Ingest.run)
        state = Warehouse(args.url).schema_state(spec.name, spec.table_name)
    except Exception as exc:  # noqa: BLE001 - no warehouse to read: said in one line, no traceback
        print(
            f"source '{spec.name}': warehouse: cannot read the source's schema state: "
            f"{redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}; "
            "fix: check --url / ETL_WAREHOUSE_URL",
            file=sys.stderr,
        )
        return 2
    rec = Reconciler(spec, state)
    if rec.schema is None:
        print(
            f"source '{spec.name}': no expected schema yet; the first load pins the inferred one",
            file=sys.stderr,
        )
        return 0
    report = rec.report(frame)
    judged = verdict(spec, report)
    if args.json:
        print(json.dumps(report.to_json(spec.name), indent=2))
    else:
        print(report.markdown())
        print(
            ("BLOCKED: " + "; ".join(short for short, _, _ in judged.stop))
            if judged.stop
            else "ok: the load would proceed"
        )
    out = sys.stderr if args.json else sys.stdout
    if judged.stop:  # the very line the run would fail with
        print(
            "a run would stop: "
            + str(
                SourceError(spec.name, args.file, "; ".join(p for _, p, _ in judged.stop), judged.stop[0][2])
            ),
            file=out,
        )
    elif judged.hold:
        print("a run would quarantine the batch: " + "; ".join(p for _, p, _ in judged.hold), file=out)
    return 1 if judged.stop else 0


def cmd_demo_api(args: argparse.Namespace) -> int:
    from .demo_api import serve

    server = serve(args.host, args.port, **({"root": Path(args.root)} if args.root else {}))
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # an AF_INET address; typeshed also allows bytes
    print(f"demo API on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    print(
        f"etl-assets serve on http://{args.host}:{args.port} (/health /stats /observability/metrics)",
        flush=True,
    )
    serve(args.host, args.port)
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
    configure_arrow()
    parser = argparse.ArgumentParser(prog="etl-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a sources file; exit 0 when valid, 1 otherwise")
    p.add_argument("file", nargs="?", help="sources file (default: $ETL_SOURCES or sources.yaml)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("ingest", help="run sources through the ingest loop without Dagster")
    p.add_argument("source", nargs="*", help="source names (default: all)")
    p.add_argument("--sources", help="sources file (default: $ETL_SOURCES or sources.yaml)")
    p.add_argument("--url", help="warehouse URL (default: $ETL_WAREHOUSE_URL or the SQLite file under .etl/)")
    p.add_argument("--run-id", help="run id recorded with the rows (default: cli-<uuid>)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "drift-check", help="compare a file's header with a source's expected schema; loads nothing"
    )
    p.add_argument("source")
    p.add_argument("file", help="a CSV file (or a JSON file of records for API sources)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--sources", help="sources file (default: $ETL_SOURCES or sources.yaml)")
    p.add_argument("--url", help="warehouse URL, for a pinned schema (default: $ETL_WAREHOUSE_URL)")
    p.set_defaults(func=cmd_drift_check)

    p = sub.add_parser("demo-api", help="serve the sample APIs and feed of the shipped sources.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--root", help="folder holding api/ and feeds/ (default: the examples/ of the checkout)")
    p.set_defaults(func=cmd_demo_api)

    p = sub.add_parser("serve", help="health, stats and Prometheus metrics over HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("tables", help="rows per warehouse table")
    p.add_argument(
        "--url", help="SQLAlchemy URL (default: $ETL_WAREHOUSE_URL or the SQLite file under .etl/)"
    )
    p.set_defaults(func=cmd_tables)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
