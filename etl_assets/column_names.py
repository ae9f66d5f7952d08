"""Column names from data made safe for the warehouse: trimmed, shortened stably to PostgreSQL's limit, kept off
the loader's lineage names, and refused when two would be one name to a dialect."""

from __future__ import annotations

import hashlib
from typing import Any

from .errors import SourceError
from .warehouse import LINEAGE, ROW_ID

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently; we shorten them ourselves, stably


def column_name(raw: Any) -> str:
    name = str(raw).strip() or "unnamed"
    if len(name.encode("utf-8")) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return name.encode("utf-8")[:50].decode("utf-8", "ignore") + "_" + digest


RESERVED = (ROW_ID, *LINEAGE)  # the loader's own columns: a source column of that name is renamed
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(name: str) -> str:
    """A name as SQLite compares identifiers (ASCII case-insensitively); PostgreSQL's quoted ones are stricter."""
    return name.translate(_ASCII_FOLD)


def _shown(name: Any, limit: int = 60) -> str:
    text = str(name)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def safe_names(source: str, location: str, raw: list[Any]) -> tuple[list[str], dict[str, str]]:
    """The warehouse names of a header: trimmed and shortened (`column_name`), a lineage name renamed
    `source_<name>`; returns them and those renames. Two raw names that end up one name to the warehouse (equal
    once trimmed or shortened, or differing only in case) are a SourceError naming both."""
    names = [column_name(c) for c in raw]
    reserved = {_fold(r) for r in RESERVED}
    renamed = {}
    for i, name in enumerate(names):
        if _fold(name) in reserved:
            names[i] = column_name(f"source_{name}")
            renamed[name] = names[i]
    # equal names cannot even be reconciled; names equal but for case are refused before the table is made
    # (`Ingest._check_table`), after `column_map` had its chance to rename one of them
    refuse_clashes(source, location, [str(c) for c in raw], names, fold=False)
    return names, renamed


def refuse_clashes(
    source: str,
    location: str,
    raw: list[str],
    names: list[str],
    fold: bool = True,
    existing: frozenset[str] = frozenset(),
) -> None:
    """`existing`: columns the table already has; two of them may stay (a PostgreSQL table made with `Id` and `id`
    before this check keeps loading), a new column may not clash with any."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        j = seen.setdefault(_fold(name) if fold else name, i)
        if j == i or (names[j] in existing and name in existing):
            continue
        r0, n0, r = raw[j], names[j], raw[i]
        long = max(len(r0.encode("utf-8")), len(r.encode("utf-8"))) > MAX_IDENTIFIER
        named = f" ({_shown(n0)}, {_shown(name)})" if (n0, name) != (r0, r) else ""
        why = (
            f"differ only in case{named}, and SQLite does not tell such names apart"
            if n0 != name
            else f"are both {_shown(name)} once shortened to {MAX_IDENTIFIER} bytes"
            if long
            else f"are both {_shown(name)} to the warehouse"
        )
        raise SourceError(
            source,
            location,
            f"columns {_shown(r0)} and {_shown(r)} {why}",
            "rename one of them in the source; or declare `columns` and map one to another name "
            "with `column_map`",
        )


def refuse_reserved(source: str, schema: dict[str, str], location: str) -> None:
    """A declared column with a lineage column's name (compared as SQLite compares names) is a SourceError."""
    reserved = {_fold(r): r for r in RESERVED}
    taken = [c for c in schema if _fold(c) in reserved]
    if taken:
        raise SourceError(
            source,
            location,
            f"column {_shown(taken[0])} of the schema is the name of the "
            f"lineage column '{reserved[_fold(taken[0])]}'",
            f"call it 'source_{taken[0]}' in `columns` (the name a source column of that name lands as)",
        )
