"""A sensor per CSV drop folder: a run when a new or changed file appears, never twice for the same file."""

import hashlib
import json
from pathlib import Path

from dagster import RunRequest, SensorDefinition, SensorEvaluationContext, SkipReason, sensor

from ..config import CsvSource
from ..errors import SourceError
from ..extract.csv import CsvExtractor


def file_signatures(spec: CsvSource) -> dict[str, str]:
    """path -> size:mtime; cheap to compute every tick (the run itself hashes contents)."""
    out = {}
    for p in CsvExtractor(spec).files():
        st = Path(p).stat()
        out[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def build_drop_sensor(spec: CsvSource) -> SensorDefinition:
    @sensor(
        name=f"{spec.name}_drop_sensor",
        job_name=f"ingest_{spec.name}",
        minimum_interval_seconds=30,
        description=f"Requests ingest_{spec.name} when a file matching {spec.path} is new or changed.",
    )
    def _drop_sensor(context: SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        try:
            current = file_signatures(spec)
        except SourceError as exc:
            return SkipReason(str(exc))
        new = {p: s for p, s in current.items() if seen.get(p) != s}
        if not new:
            return SkipReason(f"no new or changed files matching {spec.path}")
        context.update_cursor(json.dumps({**seen, **new}, sort_keys=True))
        # The run key names exactly these file versions: a re-evaluated tick cannot launch a second run.
        key = hashlib.sha1(json.dumps(new, sort_keys=True).encode()).hexdigest()
        return RunRequest(
            run_key=f"{spec.name}:{key}", tags={"etl/source": spec.name, "etl/new_files": str(len(new))}
        )

    return _drop_sensor
