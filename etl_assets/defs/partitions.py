"""A CSV source's files as Dagster partitions, and its pool limit from `max_concurrent_files`.

Each file of a drop folder is one dynamic partition, keyed by its path below the glob's root (`DropFolder.key`).
The pool `etl/<source>` is what lets several of them run at once: its limit lives on the Dagster instance, so it
is set there from sources.yaml (by the drop sensor's ticks and by every run of the source).
"""

from __future__ import annotations

import logging
from typing import Any

from dagster import DynamicPartitionsDefinition
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

from ..config import CsvSource, SourceSpec
from ..extract.csv import CsvExtractor

log = logging.getLogger(__name__)


def pool_name(source: str) -> str:
    return f"etl/{source}"


def partitions_name(source: str) -> str:
    return f"{source}_files"


def file_partitions(spec: SourceSpec) -> DynamicPartitionsDefinition | None:
    """A CSV source's files (one partition each); None for API and RSS sources, which stay unpartitioned."""
    return (
        DynamicPartitionsDefinition(name=partitions_name(spec.name)) if isinstance(spec, CsvSource) else None
    )


def file_keys(spec: CsvSource) -> list[str]:
    """The partition keys of the files in the drop folder now (see `partition_keys_of`)."""
    return list(partition_keys_of(spec, dict.fromkeys(CsvExtractor(spec).pin(), "")))


def partition_keys_of(spec: CsvSource, by_key: dict[str, str]) -> dict[str, str]:
    """The entries whose key Dagster accepts as a partition key (no '...', no control character); a file
    named otherwise is read by the runs without a partition only, and says so."""
    bad = [k for k in by_key if any(s in k for s in INVALID_PARTITION_SUBSTRINGS)]
    for k in bad:
        log.warning(
            "source %s: file %r cannot be a partition (its name holds '...' or a control character); "
            "it is loaded by ingest_%s runs without a partition; fix: rename the file",
            spec.name,
            k,
            spec.name,
        )
    return {k: v for k, v in by_key.items() if k not in bad}


def new_partition_keys(instance: Any, spec: CsvSource, keys: list[str]) -> list[str]:
    """The keys not yet partitions of the source."""
    known = set(instance.get_dynamic_partitions(partitions_name(spec.name)))
    return [k for k in keys if k not in known]


def sync_pool_limit(instance: Any, spec: SourceSpec) -> None:
    """Set the pool's limit on the instance to the source's `max_concurrent_files`, when sources.yaml sets it
    (else the instance's own limit holds: `concurrency.pools.default_limit`, or one set by hand)."""
    if "max_concurrent_files" not in spec.model_fields_set:
        return
    storage = instance.event_log_storage
    if not getattr(storage, "supports_global_concurrency_limits", False):
        return
    pool, want = pool_name(spec.name), getattr(spec, "max_concurrent_files", 1)
    have = storage.get_concurrency_info(pool).slot_count if pool in storage.get_concurrency_keys() else None
    if have != want:
        storage.set_concurrency_slots(pool, want)
        log.info("source %s: pool %s limit set to %d (max_concurrent_files)", spec.name, pool, want)
