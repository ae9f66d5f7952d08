"""Reconcile each batch's columns with the source's expected schema: renames, new and missing columns.

The expected schema is the declared `columns`, or the schema inferred on the first load and pinned. A header is
compared once per run (batches of one file share it); its drift events are recorded with the first batch that
carries it, in that batch's transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .drift import ColumnMapping, ColumnProfile, DriftReport, detect_drift, shown
from .errors import SourceError
from .warehouse import DriftEvent, SchemaState

if TYPE_CHECKING:
    import pandas as pd

    from .config import SourceSpec

log = logging.getLogger(__name__)

SAMPLE_ROWS = 500


class DriftBlocked(SourceError):
    """The batch cannot load as it is: a required column without a credible match, a rename only suggested, swapped
    headers (drift.on_swap: fail), two columns for one, or a new column under drift.on_new_column: fail."""

    def __init__(self, source: str, place: str, problem: str, fix: str, report: DriftReport):
        super().__init__(source, place, problem, fix)
        self.report = report


@dataclass
class Reconciled:
    frame: pd.DataFrame  # columns renamed to the expected names
    events: list[DriftEvent]  # drift events to record with this batch
    blocked: str | None = (
        None  # a reason to quarantine the whole batch (drift.on_missing_required: quarantine)
    )
    changed: bool = False  # schema, accepted renames or profiles moved: persist them with this batch


def required_columns(spec: SourceSpec) -> list[str]:
    """drift.required, else every declared column, else (an inferred schema) the primary key."""
    if spec.drift.required is not None:
        return list(spec.drift.required)
    return list(spec.columns) if spec.columns else list(spec.primary_key or [])


@dataclass
class Verdict:
    """What a header's drift report means for its batch under the source's `drift` policy: one judgement for a
    run and for `drift-check`. Each entry is (short reason, problem, fix)."""

    stop: list[tuple[str, str, str]] = field(default_factory=list)  # the load stops (DriftBlocked)
    hold: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # the batch is quarantined with the problem


def _candidates(m: ColumnMapping) -> str:
    return " (best: " + ", ".join(f"'{c}' {shown(s)}" for c, s in m.candidates) + ")" if m.candidates else ""


def verdict(spec: SourceSpec, report: DriftReport) -> Verdict:
    d, out = spec.drift, Verdict()
    for c in report.conflicts:  # never loadable: one table column cannot take two file columns
        mapped = c["mapped_from"]
        fix = "keep one of the two columns in the file" + (
            f", or drop the `column_map` entry for '{mapped}'" if mapped in (spec.column_map or {}) else ""
        )
        out.stop.append(
            (
                f"columns '{mapped}' and '{c['observed']}' both load into '{c['column']}'",
                f"columns '{mapped}' and '{c['observed']}' would both load into '{c['column']}'",
                fix,
            )
        )
    swapped = report.swapped()
    if swapped and d.on_swap == "fail":
        cols = [str(m.observed) for m in swapped]
        problem = "the headers look swapped: " + ", ".join(
            f"the values under '{m.swapped_with}' fit '{m.expected}' (profile {shown(m.evidence['swap_profile'])}) "
            f"better than those under '{m.observed}' ({shown(m.confidence)})"
            for m in swapped
        )
        mapping = ", ".join(f"'{m.swapped_with}': '{m.expected}'" for m in swapped)
        out.stop.append(
            (
                f"columns {cols} look swapped",
                problem,
                f"correct the file's header, or map the columns in `column_map` ({{{mapping}}}); if the "
                "values really changed, set drift.on_swap: warn",
            )
        )
    unresolved = out.stop if d.on_missing_required == "fail" else out.hold
    required = set(required_columns(spec))
    for m in report.mappings:
        if m.decision == "suggested":  # any column: loading would leave it empty and its values elsewhere
            unresolved.append(
                (
                    f"column '{m.expected}' only suggested ('{m.observed}' {shown(m.confidence)})",
                    f"column '{m.expected}' may be '{m.observed}' (confidence {shown(m.confidence)}, below "
                    f"drift.auto_map_threshold {d.auto_map_threshold}): not applied, and loading would leave "
                    f"'{m.expected}' empty and put its values in a new column '{m.observed}'",
                    f"if it is, column_map: {{'{m.observed}': '{m.expected}'}}; if '{m.observed}' is a column of its "
                    "own, "
                    + (
                        "add it to `columns`"
                        if spec.columns
                        else f"column_map: {{'{m.observed}': '{m.observed}'}}"
                    ),
                )
            )
        elif m.expected in required and not m.applied:
            unresolved.append(
                (
                    f"required column '{m.expected}' unmatched",
                    f"required column '{m.expected}' has no credible match in the data{_candidates(m)}",
                    (
                        "map it in `column_map`, e.g. column_map: {"
                        + f"'{m.candidates[0][0]}': '{m.expected}'"
                        + "}"
                    )
                    if m.candidates
                    else "fix the source or `columns`",
                )
            )
    if report.added and d.on_new_column == "fail":
        out.stop.append(
            (
                f"new column(s) {report.added}",
                f"new column(s) {report.added}",
                "add them to `columns` or set drift.on_new_column: evolve",
            )
        )
    return out


class Reconciler:
    def __init__(self, spec: SourceSpec, state: SchemaState | None):
        state = state or SchemaState()
        self.spec = spec
        self.declared = dict(spec.columns) if spec.columns else None
        self.schema: dict[str, str] | None = dict(self.declared or state.columns or {}) or None
        self.accepted = dict(state.accepted)
        self.profiles = {k: ColumnProfile.from_json(v) for k, v in state.profiles.items()}
        self.reports: dict[
            tuple[str, ...], tuple[str, DriftReport]
        ] = {}  # header -> (first location, report)

    @property
    def required(self) -> list[str]:
        return required_columns(self.spec)

    def state(self) -> SchemaState:
        return SchemaState(self.schema, self.accepted, {k: p.to_json() for k, p in self.profiles.items()})

    def report(self, frame: pd.DataFrame) -> DriftReport:
        assert self.schema is not None
        head = frame.head(SAMPLE_ROWS)
        d = self.spec.drift
        return detect_drift(
            self.schema,
            [str(c) for c in frame.columns],
            {c: head[c].tolist() for c in head.columns},
            column_map=self.spec.column_map,
            accepted=self.accepted,
            auto_map_threshold=d.auto_map_threshold,
            suggest_threshold=d.suggest_threshold,
            previous_profiles=self.profiles,
        )

    def reconcile(self, frame: pd.DataFrame, location: str) -> Reconciled:
        if self.schema is None:  # first load: the data defines the schema, which is pinned with this batch
            from .inference import infer_schema  # pandas: imported once there is a batch

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
        judged = verdict(self.spec, report)
        if judged.stop:
            raise DriftBlocked(
                self.spec.name, location, "; ".join(p for _, p, _ in judged.stop), judged.stop[0][2], report
            )
        blocked = "; ".join(p for _, p, _ in judged.hold) or None  # drift.on_missing_required: quarantine
        frame = frame.rename(columns=report.rename_map())
        if frame.columns.duplicated().any():  # the report's conflicts catch this; a frame must never hold it
            raise DriftBlocked(
                self.spec.name,
                location,
                f"two columns would load into {sorted(set(frame.columns[frame.columns.duplicated()]))}",
                "keep one of them in the file or fix `column_map`",
                report,
            )
        new = [c for c in report.added if c in frame.columns]
        if new:
            if self.spec.drift.on_new_column == "ignore":
                frame = frame.drop(columns=new)
            else:
                from .inference import infer_schema

                added = infer_schema(frame[new])
                log.warning(
                    "source %s: new column(s) %s from %s added to the schema", self.spec.name, added, location
                )
                self.schema = {**self.schema, **added}
        if first:
            for m in report.mappings:
                if m.decision == "auto_mapped":
                    assert m.observed is not None and m.expected is not None  # a mapping applied names both
                    log.warning(
                        "source %s: column '%s' in %s read as '%s' (confidence %s)",
                        self.spec.name,
                        m.observed,
                        location,
                        m.expected,
                        shown(m.confidence),
                    )
                    self.accepted[m.observed] = m.expected  # remembered: the same header will not alert again
            if (
                blocked is None
            ):  # a quarantined batch did not land: the next load compares with the last that did
                self._learn_profiles(frame)
        return Reconciled(frame, events, blocked, changed=first)

    def _learn_profiles(self, frame: pd.DataFrame) -> None:
        head = frame.head(SAMPLE_ROWS)
        for c in head.columns:
            if c in (self.schema or {}):
                self.profiles[str(c)] = ColumnProfile.of(head[c].tolist())

    def events(self, report: DriftReport) -> list[DriftEvent]:
        """One row per non-trivial decision (etl_schema_drift)."""
        out: list[DriftEvent] = [
            {
                "expected": m.expected,
                "observed": m.observed,
                "confidence": float(m.confidence),
                "decision": m.decision,
            }
            for m in report.mappings
            if m.decision in ("auto_mapped", "suggested", "swapped")
        ]
        required = set(self.required)
        # a CSV header that lost a column is news; an API page without an optional key is not
        if self.spec.kind == "csv":
            out += [
                {
                    "expected": m.expected,
                    "observed": None,
                    "confidence": float(m.confidence),
                    "decision": "unmapped" if m.expected in required else "removed",
                }
                for m in report.mappings
                if m.decision == "unmapped"
            ]
        else:
            out += [
                {
                    "expected": m.expected,
                    "observed": None,
                    "confidence": float(m.confidence),
                    "decision": "unmapped",
                }
                for m in report.mappings
                if m.decision == "unmapped" and m.expected in required
            ]
        conflicting = {c["observed"] for c in report.conflicts}
        out += [
            {"expected": c["column"], "observed": c["observed"], "confidence": None, "decision": "conflict"}
            for c in report.conflicts
        ]
        out += [
            {"expected": None, "observed": c, "confidence": None, "decision": "added"}
            for c in report.added
            if c not in conflicting
        ]
        out += [
            {
                "expected": t["column"],
                "observed": report.observed_for(t["column"]),
                "confidence": None,
                "decision": f"type_changed:{t['expected']}->{t['observed']}",
            }
            for t in report.type_changes
        ]
        return out
