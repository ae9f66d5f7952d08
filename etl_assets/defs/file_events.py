"""Each file's partition status after a run without a partition key (ingest_all, `make run`, ingest_<source>).

Such a run is the asset's, not a partition's: Dagster records its materialization without a partition,
so the files it loaded would show as missing on the partitions page. It also yields one
`AssetMaterialization` per file it loaded, for that file's partition (the public route: an asset may
yield materializations of its own partitions), marked with `FILE_OF_RUN` so the metrics fold and the
carry-overs skip them. A file that fails such a run gets a planned materialization of its partition in
that failed run, which is how Dagster marks a partition failed (as for a partition run). Dagster has no
public call for that event: it is built with the internal constructor Dagster's step execution uses
(the release train is pinned; test_partitions.py fails if it moves).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dagster import AssetExecutionContext, AssetMaterialization, MetadataValue
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent

from ..config import CsvSource, SourceSpec
from ..extract.dropfolder import DropFolder
from . import metadata_keys as k
from .partitions import partitions_name


class FileEvents:
    """For a CSV run without a partition: the checkpoint before the run, to tell the files it landed."""

    def __init__(self, context: AssetExecutionContext, spec: CsvSource, before: Mapping[str, Any] | None):
        self.context, self.spec, self.folder = context, spec, DropFolder(spec)
        self.before: Mapping[str, Any] = dict((before or {}).get("files", {}))

    @classmethod
    def of(cls, context: AssetExecutionContext, spec: SourceSpec, checkpoint: Any) -> FileEvents | None:
        """None for a partition run (its materialization is its partition's), for API and RSS sources,
        and when the warehouse does not answer (the run then fails with the ingest's one-line error)."""
        if not isinstance(spec, CsvSource) or context.has_partition_key:
            return None
        try:
            return cls(context, spec, checkpoint())
        except sa.exc.SQLAlchemyError:
            return None

    def landed(self, files: Mapping[str, Any]) -> Iterator[AssetMaterialization]:
        """One materialization per file of `files` (path -> checkpoint entry) read to its end."""
        known = set(self.context.instance.get_dynamic_partitions(partitions_name(self.spec.name)))
        for path, entry in sorted(files.items()):
            key = self.folder.key(path)
            if not entry.get("complete") or key not in known:  # cut short, or a name no partition can have
                continue
            yield AssetMaterialization(
                asset_key=self.context.asset_key,
                partition=key,
                description=f"{key} landed by a run of {self.context.job_name} without a partition",
                metadata={
                    k.FILE_OF_RUN: self.context.job_name,
                    k.SOURCE_LOCATION: MetadataValue.path(path),
                    k.FILE_ROWS: int(entry.get("rows") or 0),
                    k.FILE_SHA256: str(entry.get("sha256") or ""),
                },
            )

    def landed_before_failure(self, after: Mapping[str, Any] | None) -> Iterator[AssetMaterialization]:
        """After a failed run: the files whose checkpoint entry this run completed (new or changed)."""
        now = dict((after or {}).get("files", {}))
        return self.landed({p: e for p, e in now.items() if e != self.before.get(p)})

    def failed(self, place: str) -> str | None:
        """Record the planned materialization of the failing file's partition in this run (which then fails:
        Dagster shows the partition failed); its key, or None when `place` is no file with a partition."""
        path = place.removeprefix("file ")
        if not os.path.isabs(path) or not Path(path).is_file():
            return None
        key = self.folder.key(path)
        if key not in self.context.instance.get_dynamic_partitions(partitions_name(self.spec.name)):
            return None
        step = self.context.get_step_execution_context().step.key
        planned = AssetMaterializationPlannedData(self.context.asset_key, partition=key)
        event = DagsterEvent.build_asset_materialization_planned_event(self.context.job_name, step, planned)
        self.context.instance.report_dagster_event(event, run_id=self.context.run_id)  # as Dagster's own are
        return key
