"""Asset checks of every source: schema_drift (blocking), primary_key_unique, required_not_null.

They are evaluated by the asset's own step, from what the ingest saw and what the warehouse holds.
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from ..config import SourceSpec
from ..drift import DriftReport
from ..run_stats import IngestStats
from ..warehouse import ROW_ID, Warehouse


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
    ]


def drift_check(reports: list[DriftReport], blocked: str | None = None) -> AssetCheckResult:
    renamed = sum(1 for r in reports for m in r.mappings if m.decision == "auto_mapped")
    suggested = sum(1 for r in reports for m in r.mappings if m.decision == "suggested")
    swapped = sum(1 for r in reports for m in r.mappings if m.decision == "swapped")
    added = sorted({c for r in reports for c in r.added})
    type_changes = [t for r in reports for t in r.type_changes]
    error = blocked is not None or bool(type_changes)
    warn = bool(
        renamed or suggested or swapped or added
    )  # swapped under drift.on_swap: warn loaded as headed
    # the report's own table: the same confidence per pair as the run's error, etl_schema_drift and drift-check
    table = "\n\n".join(r.markdown() for r in reports) or "no header compared in this run (no new data)"
    meta: dict[str, int | MetadataValue] = {
        "renamed": renamed,
        "suggested": suggested,
        "swapped": swapped,
        "added": len(added),
        "type_changes": len(type_changes),
        "mappings": MetadataValue.md(table),
    }
    if blocked:
        meta["blocked"] = MetadataValue.text(blocked)
    return AssetCheckResult(
        check_name="schema_drift",
        passed=not (error or warn),
        severity=AssetCheckSeverity.ERROR if error else AssetCheckSeverity.WARN,
        metadata=meta,
    )


def table_checks(
    spec: SourceSpec, stats: IngestStats, wh: Warehouse, required: list[str]
) -> list[AssetCheckResult]:
    key = list(spec.primary_key or [ROW_ID])
    dup_table = wh.duplicate_keys(spec.table_name, key) if stats.schema else 0
    checked = [c for c in required if c in stats.schema]
    # the run wrote no row (e.g. a rerun on unchanged input): nothing of this run to scan for NULLs
    nulls = (
        wh.null_counts(spec.table_name, checked, stats.run_id)
        if stats.inserted or stats.updated
        else {c: 0 for c in checked}
    )
    return [
        AssetCheckResult(
            check_name="primary_key_unique",
            passed=dup_table == 0 and stats.duplicate_keys == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "key": ", ".join(key),
                "duplicate_keys_in_table": dup_table,
                "repeated_keys_in_source": stats.duplicate_keys,
            },
        ),
        AssetCheckResult(
            check_name="required_not_null",
            passed=not any(nulls.values()),
            severity=AssetCheckSeverity.WARN,
            metadata={"required": ", ".join(required), "null_counts": MetadataValue.json(nulls)},
        ),
    ]
