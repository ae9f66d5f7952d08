"""The warehouse's own tables (checkpoints, quarantine, runs, schemas, drift) and the columns every data table has.

The rate limiter's two tables belong to `etl_assets.ratelimit`; `SYSTEM_TABLES` names all seven.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from .. import ratelimit

LINEAGE = {"_etl_run_id": "string", "_etl_loaded_at": "timestamp", "_etl_source": "string"}
ROW_ID = "_etl_row_id"  # the key of a table whose source has no primary_key

metadata = sa.MetaData()
checkpoints = sa.Table(
    "etl_checkpoints",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
quarantine = sa.Table(
    "etl_quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False, index=True),
    sa.Column("run_id", sa.Text),
    sa.Column("location", sa.Text),
    sa.Column("row_number", sa.BigInteger),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.Text),
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
)
runs = sa.Table(
    "etl_runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("source_type", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("records_processed", sa.BigInteger, default=0),
    sa.Column("records_inserted", sa.BigInteger, default=0),
    sa.Column("records_updated", sa.BigInteger, default=0),
    sa.Column("records_failed", sa.BigInteger, default=0),
    sa.Column("error", sa.Text),
)
schema_drift = sa.Table(
    "etl_schema_drift",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False, index=True),
    sa.Column("run_id", sa.Text),
    sa.Column("expected", sa.Text),
    sa.Column("observed", sa.Text),
    sa.Column("confidence", sa.Float),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
)
schemas = sa.Table(
    "etl_schemas",
    metadata,  # the schema each source's table was created with: declared, or inferred and pinned
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("accepted", sa.Text),  # renames applied before (observed -> expected): they do not alert again
    sa.Column(
        "profiles", sa.Text
    ),  # value profile per column from the last load, evidence for rename matching
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
SYSTEM_TABLES = tuple(metadata.tables) + tuple(ratelimit.metadata.tables)


def create_system_tables(conn: sa.Connection) -> None:
    """Every system table, ours and the rate limiter's, where it does not exist yet."""
    metadata.create_all(conn, checkfirst=True)
    ratelimit.metadata.create_all(conn, checkfirst=True)


def file_row_prefix(location: str, version: str) -> str:
    """What `_etl_row_id` of a file's row starts with, without a primary key: 16 hex digits of the path's hash and
    16 of the content's SHA-256 (`<path>.<version>.<row number>`). A new version of the file deletes the path's
    rows that do not start with its own prefix (`load(replaces=...)`)."""
    return f"{hashlib.sha256(location.encode('utf-8')).hexdigest()[:16]}.{version[:16]}."


def index_name(table: str, column: str) -> str:
    name = f"ix_{table}_{column}"
    if len(name.encode("utf-8")) <= 63:  # PostgreSQL's identifier limit
        return name
    return f"ix_{hashlib.sha1(table.encode('utf-8')).hexdigest()[:12]}_{column}"
