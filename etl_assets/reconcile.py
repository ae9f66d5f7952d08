"""Reconcile each batch's columns with the source's expected schema: renames, new and missing columns.

The expected schema is the declared `columns`, or the schema inferred on the first load and pinned. A header is
compared once per run (batches of one file share it); its drift events are recorded with the first batch that
carries it, in that batch's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .drift import ColumnProfile, DriftReport, detect_drift
from .errors import SourceError
from .schema import infer_schema

log = logging.getLogger(__name__)

SAMPLE_ROWS = 500


@dataclass
class SchemaState:
    """What the warehouse remembers of a source's schema (table etl_schemas)."""

    columns: dict[str, str] | None = None
    accepted: dict[str, str] = field(default_factory=dict)  # observed -> expected renames already applied
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # expected column -> value profile


class DriftBlocked(SourceError):
    """The batch cannot load: a required column has no credible match (or a new column under `fail`)."""

    def __init__(self, source: str, place: str, problem: str, fix: str, report: DriftReport):
        super().__init__(source, place, problem, fix)
        self.report = report


@dataclass
class Reconciled:
    frame: pd.DataFrame  # columns renamed to the expected names
    events: list[dict[str, Any]]  # drift events to record with this batch
    blocked: str | None = None  # a reason to quarantine the whole batch (drift.on_missing_required: quarantine)
    changed: bool = False  # schema, accepted renames or profiles moved: persist them with this batch


def required_columns(spec: Any) -> list[str]:
    """drift.required, else every declared column, else (an inferred schema) the primary key."""
    if spec.drift.required is not None:
        return list(spec.drift.required)
    return list(spec.columns) if spec.columns else list(spec.primary_key or [])


def blocks(spec: Any, report: DriftReport) -> list[str]:
    """Why a batch with this header would not load (empty: it would)."""
    why = [f"required column '{m.expected}' unmatched" for m in report.missing(required_columns(spec))
           if spec.drift.on_missing_required == "fail"]
    if report.added and spec.drift.on_new_column == "fail":
        why.append(f"new column(s) {report.added}")
    return why


class Reconciler:
    def __init__(self, spec: Any, state: SchemaState | None):
        state = state or SchemaState()
        self.spec = spec
        self.declared = dict(spec.columns) if spec.columns else None
        self.schema: dict[str, str] | None = dict(self.declared or state.columns or {}) or None
        self.accepted = dict(state.accepted)
        self.profiles = {k: ColumnProfile.from_json(v) for k, v in state.profiles.items()}
        self.reports: dict[tuple[str, ...], tuple[str, DriftReport]] = {}  # header -> (first location, report)

    @property
    def required(self) -> list[str]:
        return required_columns(self.spec)

    def state(self) -> SchemaState:
        return SchemaState(self.schema, self.accepted, {k: p.to_json() for k, p in self.profiles.items()})

    def report(self, frame: pd.DataFrame) -> DriftReport:
        assert self.schema is not None
        head = frame.head(SAMPLE_ROWS)
        d = self.spec.drift
        return detect_drift(self.schema, [str(c) for c in frame.columns], {c: head[c].tolist() for c in head.columns},
                            column_map=self.spec.column_map, accepted=self.accepted,
                            auto_map_threshold=d.auto_map_threshold, suggest_threshold=d.suggest_threshold,
                            previous_profiles=self.profiles)

    def reconcile(self, frame: pd.DataFrame, location: str) -> Reconciled:
        if self.schema is None:  # first load: the data defines the schema, which is pinned with this batch
            self.schema = infer_schema(frame)
            log.info("source %s: inferred schema %s", self.spec.name, self.schema)
            self._learn_profiles(frame)
            return Reconciled(frame, [], changed=True)
        header = tuple(str(c) for c in frame.columns)
        first = header not in self.reports
        if first:
            self.reports[header] = (location, self.report(frame))
        report = self.reports[header][1]
        events = self.events(report) if first else []
        blocked = None
        missing = report.missing(self.required)
        if missing:
            problem = "; ".join(
                f"required column '{m.expected}' has no credible match in the data"
                + (" (best: " + ", ".join(f"'{c}' {s:.2f}" for c, s in m.candidates) + ")" if m.candidates else "")
                for m in missing)
            if self.spec.drift.on_missing_required == "fail":
                fix = ("map it in `column_map`, e.g. column_map: {" + f"'{missing[0].candidates[0][0]}': "
                       f"'{missing[0].expected}'" + "}" if missing[0].candidates else "fix the source or `columns`")
                raise DriftBlocked(self.spec.name, location, problem, fix, report)
            blocked = problem
        frame = frame.rename(columns=report.rename_map())
        new = [c for c in report.added if c in frame.columns]
        if new:
            policy = self.spec.drift.on_new_column
            if policy == "fail":
                raise DriftBlocked(self.spec.name, location, f"new column(s) {new}",
                                   "add them to `columns` or set drift.on_new_column: evolve", report)
            if policy == "ignore":
                frame = frame.drop(columns=new)
            else:
                added = infer_schema(frame[new])
                log.warning("source %s: new column(s) %s from %s added to the schema", self.spec.name, added, location)
                self.schema = {**self.schema, **added}
        if first:
            for m in report.mappings:
                if m.decision == "auto_mapped":
                    log.warning("source %s: column '%s' in %s read as '%s' (confidence %.2f)", self.spec.name,
                                m.observed, location, m.expected, m.confidence)
                    self.accepted[m.observed] = m.expected  # remembered: the same header will not alert again
            self._learn_profiles(frame)
        return Reconciled(frame, events, blocked, changed=first)

    def _learn_profiles(self, frame: pd.DataFrame) -> None:
        head = frame.head(SAMPLE_ROWS)
        for c in head.columns:
            if c in (self.schema or {}):
                self.profiles[str(c)] = ColumnProfile.of(head[c].tolist())

    def events(self, report: DriftReport) -> list[dict[str, Any]]:
        """One row per non-trivial decision (etl_schema_drift)."""
        out = [{"expected": m.expected, "observed": m.observed, "confidence": float(m.confidence),
                "decision": m.decision} for m in report.mappings if m.decision in ("auto_mapped", "suggested")]
        required = set(self.required)
        # a CSV header that lost a column is news; an API page without an optional key is not
        if self.spec.kind == "csv":
            out += [{"expected": m.expected, "observed": None, "confidence": float(m.confidence),
                     "decision": "unmapped" if m.expected in required else "removed"}
                    for m in report.mappings if m.decision == "unmapped"]
        else:
            out += [{"expected": m.expected, "observed": None, "confidence": float(m.confidence),
                     "decision": "unmapped"} for m in report.mappings if m.decision == "unmapped" and m.expected in required]
        out += [{"expected": None, "observed": c, "confidence": None, "decision": "added"} for c in report.added]
        out += [{"expected": t["column"], "observed": report.observed_for(t["column"]), "confidence": None,
                 "decision": f"type_changed:{t['expected']}->{t['observed']}"} for t in report.type_changes]
        return out
