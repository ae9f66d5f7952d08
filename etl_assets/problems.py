"""A typed column's per-value problems, shared by coercion's paths and date reading."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd

# A column's problems: None when every value fitted (the fast paths' answer, free), else text per row ("is not a
# valid integer") or None where the value fitted.
Problems: TypeAlias = pd.Series | None


def no_problems(index: pd.Index) -> pd.Series:
    """None per row, to fill in (a general path's start)."""
    return pd.Series(np.full(len(index), None, dtype=object), index=index)  # Series(None): NaN


def or_none(problems: pd.Series) -> Problems:
    return problems if problems.notna().any() else None


def problems_where(bad: pd.Series, problem: str) -> Problems:
    if not bad.any():
        return None
    # numpy stub gap: its ArrayLike leaves out None, which np.where takes as an object scalar
    found = np.where(bad.to_numpy(dtype=bool), problem, None)  # type: ignore[call-overload]
    return pd.Series(found, index=bad.index, dtype=object)
