"""What the checks and the metadata ask of a table after a run: row counts, duplicate keys, NULLs among the rows
a run wrote - the last without scanning the table when the run's own tally already says none."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


class NullTally:
    """NULLs per column of the rows each run sent to each table, counted as the batches land, for the runs whose
    every write went through this process (their etl_runs row was made here: a step retried in a new process,
    or a run with writers elsewhere, is not one). It is an upper bound of the NULLs the table holds for the run:
    a row the run wrote can since only have been rewritten, by the run itself or by another one (then it holds
    that run's id). Only the newest runs are kept."""

    def __init__(self, keep: int = 256):
        self.keep = keep
        self._fresh: OrderedDict[tuple[str, str], None] = OrderedDict()  # (source, run id)
        self._counts: OrderedDict[tuple[str, str], dict[str, int] | None] = OrderedDict()  # (table, run id)

    def started(self, source: str, run_id: str) -> None:
        """The run's first record for this source was made by this process."""
        self._fresh[(source, run_id)] = None
        _trim(self._fresh, self.keep)

    def add(self, source: str, table: str, run_id: str, rows: pd.DataFrame) -> None:
        key = (table, run_id)
        if (source, run_id) not in self._fresh:
            self._counts[key] = None  # rows of this run may have landed elsewhere: no bound
        elif (counts := self._counts.setdefault(key, {})) is not None:
            for name, n in rows.isna().sum().items():
                if n:
                    counts[str(name)] = counts.get(str(name), 0) + int(n)
        _trim(self._counts, self.keep)

    def bound(self, table: str, run_id: str) -> dict[str, int] | None:
        """NULLs per column the run sent to the table (absent: none), or None when unknown."""
        return self._counts.get((table, run_id))


def _trim(d: OrderedDict, keep: int) -> None:
    while len(d) > keep:
        d.popitem(last=False)


class TableStats:
    """Mixed into the Warehouse."""

    engine: sa.Engine
    q: Callable[[str], str]
    nulls: NullTally

    def row_count(self, table: str) -> int:
        if not sa.inspect(self.engine).has_table(table):
            return 0
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {self.q(table)}")).scalar_one())

    def duplicate_keys(self, table: str, key: list[str]) -> int:
        """Keys held by more than one row (0 whenever the table has its primary key constraint)."""
        insp = sa.inspect(self.engine)
        if insp.has_table(table) and set(insp.get_pk_constraint(table)["constrained_columns"] or []) == set(
            key
        ):
            return 0  # the database enforces it: no need to scan (and group) the whole table after every run
        cols = ", ".join(self.q(k) for k in key)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM (SELECT {cols} FROM {self.q(table)} GROUP BY {cols} HAVING count(*) > 1) d"
                    )
                ).scalar_one()
            )

    def null_counts(self, table: str, columns: list[str], run_id: str) -> dict[str, int]:
        """NULLs per column among the rows the run wrote. When the run's tally (`NullTally`) has none in
        `columns`, none can be in the table either, and the table (no index on the run id) is not scanned."""
        bound = self.nulls.bound(table, run_id)
        if not columns or (bound is not None and not any(bound.get(c) for c in columns)):
            return {c: 0 for c in columns}
        if not sa.inspect(self.engine).has_table(table):
            return {c: 0 for c in columns}
        sums = ", ".join(f"sum(CASE WHEN {self.q(c)} IS NULL THEN 1 ELSE 0 END)" for c in columns)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(f"SELECT {sums} FROM {self.q(table)} WHERE _etl_run_id = :r"), {"r": run_id}
            ).one()
        return {c: int(v or 0) for c, v in zip(columns, row, strict=True)}

    def row_counts(self) -> dict[str, int]:
        names = sorted(sa.inspect(self.engine).get_table_names())
        return {n: self.row_count(n) for n in names}
