"""A sensor per CSV drop folder: one run per new or changed file (its partition), never twice for one version."""

import json
from pathlib import Path

from dagster import RunRequest, SensorDefinition, SensorEvaluationContext, SensorResult, SkipReason, sensor

from ..config import CsvSource
from ..errors import SourceError
from ..extract.csv import CsvExtractor
from .partitions import file_partitions, partition_keys_of, partitions_name, sync_pool_limit


def file_signatures(spec: CsvSource) -> dict[str, str]:
    """partition key -> size:mtime, the file's version; cheap to compute every tick (the run hashes contents)."""
    ex = CsvExtractor(spec)
    out = {}
    for key, p in zip(ex.pin(), ex.files(), strict=True):
        st = Path(p).stat()
        out[key] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def build_drop_sensor(spec: CsvSource) -> SensorDefinition:
    partitions = file_partitions(spec)
    assert partitions is not None  # a CSV source's asset is partitioned per file
    job = f"ingest_{spec.name}"

    @sensor(
        name=f"{spec.name}_drop_sensor",
        job_name=job,
        minimum_interval_seconds=30,
        description=f"Requests {job} for each file matching {spec.path} that is new or changed: one run per "
        "file, its partition.",
    )
    def _drop_sensor(context: SensorEvaluationContext):
        sync_pool_limit(context.instance, spec)
        try:
            current = partition_keys_of(spec, file_signatures(spec))
        except SourceError as exc:
            return SkipReason(str(exc))
        seen = json.loads(context.cursor) if context.cursor else {}
        new = {k: v for k, v in current.items() if seen.get(k) != v}
        context.update_cursor(json.dumps(current, sort_keys=True))  # the folder's files now: bounded
        if not new:
            return SkipReason(f"no new or changed files matching {spec.path}")
        known = set(context.instance.get_dynamic_partitions(partitions_name(spec.name)))
        added = sorted(set(new) - known)
        # The run key is the file's version: a re-evaluated tick cannot launch a second run for it.
        return SensorResult(
            run_requests=[
                RunRequest(partition_key=k, run_key=f"{spec.name}:{k}:{v}", tags={"etl/source": spec.name})
                for k, v in sorted(new.items())
            ],
            dynamic_partitions_requests=[partitions.build_add_request(added)] if added else [],
        )

    return _drop_sensor
