"""Asset checks of every source: schema_drift (blocking), primary_key_unique, required_not_null, quarantine.

They are evaluated by the asset's own step, from what the ingest saw and what the warehouse holds. Every result
has a one-line description (the check history shows it) and says what it looked at. When drift blocks the load,
the other three are still evaluated on what the warehouse holds (the rows this run wrote before the block, often
none): a check that never ran would show as "Execution failed" in the UI, like a failure.
"""

from pathlib import PurePath

import sqlalchemy as sa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from ..config import SourceSpec
from ..drift import DriftReport, shown
from ..redaction import redact
from ..run_stats import IngestStats
from ..warehouse import ROW_ID, Warehouse
from ..warehouse.tables import quarantine

SAMPLE_ROWS = 10  # quarantined rows shown in the quarantine check's table
SHOWN_CHANGES = 3  # drift changes named in the drift check's one-line description
_LINE = 300  # a description is one line of at most this many characters


def check_specs(name: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            "schema_drift",
            asset=name,
            blocking=True,
            description="Columns match the expected schema; renames recognised with a confidence.",
        ),
        AssetCheckSpec(
            "primary_key_unique",
            asset=name,
            description="No key held by two rows, none repeated within a batch of the source.",
        ),
        AssetCheckSpec(
            "required_not_null",
            asset=name,
            description="Required columns hold no NULL in the rows this run wrote.",
        ),
        AssetCheckSpec(
            "quarantine",
            asset=name,
            description="No row of this run quarantined (WARN with a sample of row, reason and file when some are).",
        ),
    ]


def _one_line(text: str) -> str:
    line = " ".join(redact(text).split())
    return line if len(line) <= _LINE else line[: _LINE - 1] + "…"


def _file(location: str) -> str:
    """A file by its name, a URL as it is (redacted): what a description and a table cell show."""
    return redact(location) if "://" in location else PurePath(location).name


_DRIFT_SCHEMA = TableSchema(
    columns=[
        TableColumn("file", "string"),
        TableColumn("expected", "string"),
        TableColumn("observed", "string"),
        TableColumn("confidence", "string"),
        TableColumn("decision", "string"),
    ]
)


def _row(
    file: str, expected: str | None, observed: str | None, decision: str, conf: float | None = None
) -> dict:
    return {
        "file": file,
        "expected": expected,
        "observed": observed,
        "confidence": conf,
        "decision": decision,
    }


def _drift_rows(reports: list[DriftReport], files: list[str]) -> list[dict]:
    """The non-exact rows of every report, each naming the file whose header it is."""
    rows: list[dict] = []
    for i, r in enumerate(reports):
        f = _file(files[i]) if i < len(files) and files[i] else ""
        rows += [
            _row(f, m.expected, m.observed, m.decision, m.confidence)
            for m in r.mappings
            if m.decision != "exact"
        ]
        rows += [_row(f, None, c, "added") for c in r.added]
        rows += [_row(f, c["column"], c["observed"], "conflict") for c in r.conflicts]
        rows += [
            _row(
                f, t["column"], r.observed_for(t["column"]), f"type_changed:{t['expected']}->{t['observed']}"
            )
            for t in r.type_changes
        ]
    return rows


def _cells(row: dict) -> dict[str, str]:
    """A table row as text: every record of a table has the same fields, "—" where there is nothing."""
    conf = row["confidence"]
    return {
        k: (shown(conf) or "—") if k == "confidence" else ("—" if v is None else str(v))
        for k, v in row.items()
    }


def _change(row: dict) -> str:
    where = f" in {row['file']}" if row["file"] else ""
    if row["decision"] == "added":
        return f"+{row['observed']}{where}"
    if row["decision"].startswith("type_changed:"):
        return f"{row['expected']}: {row['decision'].split(':', 1)[1]}{where}"
    conf = f" ({shown(row['confidence'])})" if row["confidence"] is not None else ""
    observed = row["observed"] if row["observed"] is not None else "nothing"
    label = "" if row["decision"] == "auto_mapped" else f" {row['decision']}"
    return f"{row['expected']} <- {observed}{conf}{label}{where}"


def drift_check(
    reports: list[DriftReport], blocked: str | None = None, files: list[str] | None = None
) -> AssetCheckResult:
    """`files`: the file (or URL) of each report's header, in the same order; `blocked`: why the load stopped."""
    files = list(files or [])
    renamed = sum(1 for r in reports for m in r.mappings if m.decision == "auto_mapped")
    suggested = sum(1 for r in reports for m in r.mappings if m.decision == "suggested")
    swapped = sum(1 for r in reports for m in r.mappings if m.decision == "swapped")
    added = sorted({c for r in reports for c in r.added})
    type_changes = [t for r in reports for t in r.type_changes]
    error = blocked is not None or bool(type_changes)
    warn = bool(
        renamed or suggested or swapped or added
    )  # swapped under drift.on_swap: warn loaded as headed
    rows = _drift_rows(reports, files)
    # the report's own table too: the same confidence per pair, with the evidence and the candidates
    table = "\n\n".join(r.markdown() for r in reports) or "no header compared in this run (no new data)"
    meta: dict[str, int | MetadataValue] = {
        "changes": MetadataValue.table(
            records=[TableRecord(_cells(row)) for row in rows],
            schema=_DRIFT_SCHEMA,
        ),
        "renamed": renamed,
        "suggested": suggested,
        "swapped": swapped,
        "added": len(added),
        "type_changes": len(type_changes),
        "mappings": MetadataValue.md(table),
    }
    named = [_file(f) for f in files if f]
    if blocked:
        meta["blocked"] = MetadataValue.text(blocked)
        description = f"blocked: {blocked}" + (f" in {named[-1]}" if named else "")
    elif rows:
        shown_rows = [_change(r) for r in rows[:SHOWN_CHANGES]]
        more = f"; and {len(rows) - SHOWN_CHANGES} more" if len(rows) > SHOWN_CHANGES else ""
        description = "; ".join(shown_rows) + more
    elif reports:
        description = "columns match the expected schema" + (f" in {', '.join(named)}" if named else "")
    else:
        description = "no header compared in this run (no new data)"
    return AssetCheckResult(
        check_name="schema_drift",
        passed=not (error or warn),
        severity=AssetCheckSeverity.ERROR if error else AssetCheckSeverity.WARN,
        metadata=meta,
        description=_one_line(description),
    )


_QUARANTINE_SCHEMA = TableSchema(
    columns=[
        TableColumn("row", "int"),
        TableColumn("reason", "string"),
        TableColumn("file", "string"),
        TableColumn("raw", "string"),
    ]
)


def quarantine_check(spec: SourceSpec, wh: Warehouse, run_id: str) -> AssetCheckResult:
    """WARN when this run quarantined rows: how many, and a sample of them from etl_quarantine."""
    where = sa.and_(quarantine.c.source == spec.name, quarantine.c.run_id == run_id)
    with wh.engine.connect() as conn:
        total = int(
            conn.execute(sa.select(sa.func.count()).select_from(quarantine).where(where)).scalar_one()
        )
        sample = conn.execute(
            sa.select(quarantine.c.row_number, quarantine.c.reason, quarantine.c.location, quarantine.c.raw)
            .where(where)
            .order_by(quarantine.c.id)
            .limit(SAMPLE_ROWS)
        ).all()
    records = [
        TableRecord(
            {
                "row": int(r.row_number) if r.row_number is not None else -1,
                "reason": _one_line(r.reason),
                "file": _file(r.location or ""),
                "raw": _one_line(r.raw or "")[:200],
            }
        )
        for r in sample
    ]
    if total:
        first = sample[0]
        description = (
            f"{total} row(s) quarantined in this run, first: row {first.row_number} of "
            f"{_file(first.location or '')}: {first.reason}"
        )
    else:
        description = "no row quarantined in this run"
    return AssetCheckResult(
        check_name="quarantine",
        passed=total == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "quarantined_rows": total,
            "sample": MetadataValue.table(records=records, schema=_QUARANTINE_SCHEMA),
        },
        description=_one_line(description),
    )


def table_checks(
    spec: SourceSpec, stats: IngestStats | None, wh: Warehouse, required: list[str], run_id: str | None = None
) -> list[AssetCheckResult]:
    """primary_key_unique, required_not_null and quarantine. `stats=None`: the load stopped (drift blocked it),
    so they look at what the warehouse holds: the table, and the rows and quarantine this run wrote."""
    run_id = stats.run_id if stats is not None else (run_id or "")
    key = list(spec.primary_key or [ROW_ID])
    table = spec.table_name
    columns = set(stats.schema) if stats is not None else set(wh.existing_columns(table))
    dup_table = wh.duplicate_keys(table, key) if columns else 0
    repeated = stats.duplicate_keys if stats is not None else 0
    checked = [c for c in required if c in columns]
    # the run wrote no row (e.g. a rerun on unchanged input): nothing of this run to scan for NULLs
    wrote = stats is None or bool(stats.inserted or stats.updated)
    nulls = wh.null_counts(table, checked, run_id) if wrote and checked else {c: 0 for c in checked}
    if dup_table or repeated:
        pk = f"{dup_table} key(s) held by two rows in {table}; {repeated} repeated within a batch of the source"
    else:
        pk = f"no key ({', '.join(key)}) held by two rows in {table}"
    if stats is None:
        pk += " (drift blocked the load; checked what the table holds)"
    bad = {c: n for c, n in nulls.items() if n}
    if bad:
        nn = "NULL in the rows this run wrote: " + ", ".join(f"{c} ({n})" for c, n in bad.items())
    elif not wrote:
        nn = "no row written by this run: nothing to check"
    else:
        nn = f"no NULL in {', '.join(checked) or 'no required column'} among the rows this run wrote"
    pk_meta: dict[str, str | int] = {"key": ", ".join(key), "duplicate_keys_in_table": dup_table}
    if stats is not None:  # unknown when the load stopped: its batches' counts went with it
        pk_meta["repeated_keys_in_source"] = repeated
    return [
        AssetCheckResult(
            check_name="primary_key_unique",
            passed=dup_table == 0 and repeated == 0,
            severity=AssetCheckSeverity.WARN,
            metadata=pk_meta,
            description=_one_line(pk),
        ),
        AssetCheckResult(
            check_name="required_not_null",
            passed=not bad,
            severity=AssetCheckSeverity.WARN,
            metadata={"required": ", ".join(required), "null_counts": MetadataValue.json(nulls)},
            description=_one_line(nn),
        ),
        quarantine_check(spec, wh, run_id),
    ]
