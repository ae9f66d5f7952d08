"""The rows a load records beside the data: a quarantined row (etl_quarantine) and a drift event
(etl_schema_drift), as the pipeline and the reconciler build them. TypedDicts: they are handed to SQLAlchemy as
they are, with the run's columns added."""

from __future__ import annotations

from typing import TypedDict


class QuarantinedRow(TypedDict):
    location: str  # file path or URL the row came from
    row_number: int  # within `location`
    reason: str
    raw: str | None  # the row as JSON, or the line as read (None: nothing to show)


class DriftEvent(TypedDict):
    expected: str | None  # None for an added column
    observed: str | None  # None for a column the data lacks
    confidence: float | None  # None for a conflict, an added column or a type change
    decision: str  # auto_mapped, suggested, swapped, unmapped, removed, conflict, added, type_changed:A->B
