"""`EventTotals`: counter values folded from the Dagster event log, and where the fold stopped.

A plain, JSON-serializable container, so the core reads it (exposition, JSON view) without Dagster; the fold that
fills it from event records is `etl_assets.defs.event_fold`. The totals carry, per cursor, the storage id of the last
event they hold, so a fold continues exactly from where it stopped: the sensor keeps them in its cursor, the server
in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class EventTotals:
    """Counter values folded from the event log, plus where each event type's fold stopped. JSON-serializable."""

    after: dict[str, int] = field(default_factory=dict)  # cursor name -> last storage id folded
    series: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> json(label values) -> value
    fold: int = 0  # the version of the fold that made them (0: none); cursors of another version mean nothing

    @classmethod
    def from_json(cls, raw: str | None) -> EventTotals:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            after={k: int(v) for k, v in data.get("after", {}).items()},
            series=data.get("series", {}),
            fold=int(data.get("fold", 1)),  # the first fold wrote no version
        )

    def to_json(self) -> str:
        body = {"after": self.after, "series": self.series, "fold": self.fold}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def copy(self) -> EventTotals:
        return EventTotals.from_json(self.to_json())

    @property
    def last_storage_id(self) -> int:
        return max(self.after.values(), default=0)

    def add(self, metric: str, labels: tuple[str, ...], value: float) -> None:
        key = json.dumps(list(labels))
        bucket = self.series.setdefault(metric, {})
        bucket[key] = bucket.get(key, 0) + value

    def get(self, metric: str) -> dict[tuple[str, ...], float]:
        return {tuple(json.loads(k)): v for k, v in self.series.get(metric, {}).items()}
