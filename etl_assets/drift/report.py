"""The drift report: one mapping per expected column with its decision and confidence, and its Markdown and JSON.

One confidence per pair: each number is rounded once where it is computed and shown as is by the run's error,
``etl_schema_drift``, the asset check and ``drift-check``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# "swapped" is applied as the header says (drift.on_swap decides whether that may load)
APPLIED = ("exact", "explicit", "auto_mapped", "swapped")


@dataclass
class ColumnMapping:
    expected: str | None  # None for an added column
    observed: str | None  # None when unmapped
    # in [0, 1], rounded once (3 decimals) where it is computed; every output shows this very number
    confidence: float
    decision: str  # exact, explicit, auto_mapped, swapped, suggested or unmapped
    evidence: dict[str, float] = field(default_factory=dict)
    # top 3 observed candidates, ranked by the pair's own evidence, each with the pair's confidence
    candidates: list[tuple[str, float]] = field(default_factory=list)
    swapped_with: str | None = None  # "swapped": the observed column whose values fit this column

    @property
    def applied(self) -> bool:
        return self.decision in APPLIED


def shown(confidence: float | None) -> str:
    """A confidence as every message, table and log line prints it (the stored number, no re-rounding)."""
    return "" if confidence is None else f"{confidence:.3f}"


def _md(text: object) -> str:
    """A cell of a markdown table: names are data, so pipes, backticks and newlines are escaped."""
    s = "" if text is None else str(text)
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return " ".join(s.split()) if s.strip() else ("␠" * len(s) if s else "")


@dataclass
class DriftReport:
    mappings: list[ColumnMapping] = field(default_factory=list)  # one per expected column
    added: list[str] = field(default_factory=list)  # observed columns not mapped to any expected one
    removed: list[str] = field(default_factory=list)  # expected columns with no applied mapping
    type_changes: list[dict] = field(default_factory=list)  # {"column", "expected", "observed"}
    # observed columns (in `added` too) that would land in a column another one loads into: never loadable
    conflicts: list[dict] = field(default_factory=list)

    def observed_for(self, expected: str) -> str | None:
        """The observed column an expected column was mapped to (applied mappings only)."""
        return next((m.observed for m in self.mappings if m.expected == expected and m.applied), None)

    def rename_map(self) -> dict[str, str]:
        """observed -> expected for every applied mapping (exact, explicit, auto_mapped)."""
        return {m.observed: m.expected for m in self.mappings if m.applied and m.observed and m.expected}

    def swapped(self) -> list[ColumnMapping]:
        return [m for m in self.mappings if m.decision == "swapped"]

    def missing(self, required: Iterable[str]) -> list[ColumnMapping]:
        """Mappings of required expected columns that are unmapped or only suggested."""
        req = set(required)
        return [m for m in self.mappings if m.expected in req and not m.applied]

    def to_json(self, source: str) -> dict:
        return {
            "source": source,
            "mappings": [
                {
                    "expected": m.expected,
                    "observed": m.observed,
                    "confidence": m.confidence,
                    "decision": m.decision,
                    "evidence": dict(m.evidence),  # per signal, as the markdown's evidence column shows it
                }
                for m in self.mappings
            ]
            + [  # a refused column is a decision too: one more row, as in the markdown table
                {
                    "expected": c["column"],
                    "observed": c["observed"],
                    "confidence": None,
                    "decision": "conflict",
                    "evidence": {},
                }
                for c in self.conflicts
            ],
            "added": list(self.added),
            "removed": list(self.removed),
            "type_changes": [dict(t) for t in self.type_changes],
        }

    def markdown(self) -> str:
        lines = [
            "| expected | observed | confidence | decision | evidence |",
            "| --- | --- | ---: | --- | --- |",
        ]
        for m in self.mappings:
            ev = ", ".join(f"{k}={v:.3f}" for k, v in m.evidence.items())  # as stored, like the confidence
            if m.swapped_with is not None:
                ev += f"; values fit {_md(m.swapped_with)}"
            elif not m.applied and m.candidates:
                ev = (
                    (ev + "; " if ev else "")
                    + "candidates: "
                    + ", ".join(f"{_md(c)} ({shown(s)})" for c, s in m.candidates)
                )
            lines.append(
                f"| {_md(m.expected)} | {_md(m.observed) if m.observed is not None else '—'} | "
                f"{shown(m.confidence)} | {m.decision} | {ev} |"
            )
        for name in self.added:
            lines.append(f"| — | {_md(name)} |  | added |  |")
        for c in self.conflicts:
            lines.append(
                f"| {_md(c['column'])} | {_md(c['observed'])} |  | conflict | "
                f"{_md(c['mapped_from'])} loads into it too |"
            )
        for t in self.type_changes:
            lines.append(
                f"| {_md(t['column'])} | {_md(self.observed_for(t['column']))} |  | type changed | "
                f"{_md(t['expected'])} -> {_md(t['observed'])} |"
            )
        return "\n".join(lines)
