"""A failed warehouse statement as one actionable line, without SQL or row values."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from ..errors import SourceError

_RETRYABLE = {
    "OperationalError",
    "InterfaceError",
    "IntegrityError",
}  # PEP 249: connection lost, lock, a race


def statement_error(source: str, table: str, step: str, exc: BaseException) -> SourceError:
    """A failed statement as one line: the table, the statement's kind and the driver's first line. Never the SQL
    (it runs to megabytes) nor its parameters, nor the value a data error quotes (`invalid input syntax for type
    bigint: "x"`): row values stay out of errors, logs and etl_runs."""
    orig = getattr(exc, "orig", None) or exc
    text = (getattr(getattr(orig, "diag", None), "message_primary", None) or str(orig)).strip()
    line = text.splitlines()[0] if text else type(orig).__name__
    if str(getattr(orig, "sqlstate", None) or "").startswith("22"):  # SQLSTATE class 22, data exception
        line = line.split(": ", 1)[0]
    kinds = {c.__name__ for c in type(orig).__mro__}
    retry = bool(kinds & _RETRYABLE)
    fix = "the batch did not land and the checkpoint has not moved; a rerun resumes there" + (
        "" if retry else " (if it fails the same way, report this line)"
    )
    if kinds & {"OperationalError", "InterfaceError"} and not isinstance(
        orig, sqlite3.Error
    ):  # the server went
        fix = "check ETL_WAREHOUSE_URL and that the warehouse is up; " + fix
    if (
        getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in line
    ):  # a concurrent loader
        retry = True
        line = line.split(" DETAIL", 1)[0]
        fix = (
            "another run of this source landed the same keys at the same moment; the batch did not land and a "
            "rerun (or the step's RetryPolicy) lands it again"
        )
    if getattr(orig, "sqlstate", None) == "54000":  # program_limit_exceeded: "row is too big"
        fix = (
            "a PostgreSQL row must fit in one 8 KB page, and numbers, unlike long text, cannot move out of it: "
            "load fewer columns (declare `columns`, drift.on_new_column: ignore) or declare wide numeric ones "
            "as string"
        )
    return SourceError(
        source, f"table {table}", f"{step} failed: {type(orig).__name__}: {line[:200]}", fix, retryable=retry
    )


def database_error(source: str, where: str, exc: sa.exc.SQLAlchemyError) -> SourceError:
    """A warehouse failure as one line: the driver's first line only (SQLAlchemy's text carries the statement and
    its parameters, row values among them)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    gone = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or "does not exist" in first
    return SourceError(
        source,
        f"warehouse {where}",
        f"{type(orig).__name__}: {first}",
        "check ETL_WAREHOUSE_URL and that the database is up; a rerun resumes at the checkpoint"
        if gone
        else "a rerun resumes at the checkpoint; if it repeats, report it with this line",
        retryable=True,
    )
