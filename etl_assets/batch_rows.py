"""A batch's rows as the warehouse keeps them: their identity without a primary key, and the records of the rows
that go to quarantine."""

from __future__ import annotations

import json

import pandas as pd

from .extract import Batch
from .warehouse import QuarantinedRow, file_row_prefix


def row_ids(batch: Batch) -> list[str]:
    """Identity without a primary key (README "Row identity"), never the batching: a record's content hash (APIs,
    feeds: the extractor's `row_ids`), else the file's path, its content version and the row number."""
    if batch.row_ids is not None:
        return batch.row_ids
    prefix = file_row_prefix(batch.location, batch.version or "")
    return [f"{prefix}{i}" for i in batch.frame.index]


def quarantine_rows(batch: Batch, bad: pd.DataFrame) -> list[QuarantinedRow]:
    return [
        {
            "location": batch.location,
            "row_number": int(i),
            "reason": reason,
            "raw": json.dumps(
                {k: (None if pd.isna(v) else v) for k, v in row.items()}, default=str, ensure_ascii=False
            ),
        }
        for i, reason, row in zip(
            bad.index, bad["_reason"], bad.drop(columns="_reason").to_dict("records"), strict=True
        )
    ]


def rejected_rows(batch: Batch) -> list[QuarantinedRow]:
    return [
        {
            "location": batch.location,
            "row_number": line,
            "reason": f"line {line}: {reason}",
            "raw": raw or None,
        }
        for line, raw, reason in batch.rejected
    ]
