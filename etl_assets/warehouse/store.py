"""The warehouse: SQLite by default, PostgreSQL in production, through SQLAlchemy.

Each batch lands in ONE transaction: its rows are upserted by primary key (PostgreSQL: COPY into a staging
table, then INSERT and UPDATE; SQLite: INSERT ... ON CONFLICT - see `dialects`), its quarantined rows are
recorded, and the source's checkpoint moves. A crash anywhere before the commit leaves the table and the
checkpoint as they were.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .. import faults
from ..ratelimit import RateLimiter
from .dialects import Dialect, dialect_for
from .errors import statement_error
from .records import DriftEvent, QuarantinedRow
from .schema_state import SchemaState
from .sqltypes import kind_of, sql_type
from .stats import NullTally, TableStats
from .tables import (
    LINEAGE,
    ROW_ID,
    checkpoints,
    create_system_tables,
    index_name,
    quarantine,
    runs,
    schema_drift,
    schemas,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_DIR = ".etl"


def default_url() -> str:
    Path(DEFAULT_DIR).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(DEFAULT_DIR, 'warehouse.db').resolve()}"


def normalize_url(url: str) -> str:
    """Every PostgreSQL URL uses psycopg 3: its COPY is the fast path."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # rows of a file's earlier version, replaced by this batch
    quarantined: int = 0


class Warehouse(TableStats):
    """The store every run writes through (`Store` is its alias): tables, checkpoints, loads, runs, stats."""

    def __init__(self, url: str | None = None):
        self.url = normalize_url(url or os.environ.get("ETL_WAREHOUSE_URL") or default_url())
        # application_name lets an operator (or a chaos test) find the loader's sessions in pg_stat_activity
        connect_args = (
            {"timeout": 60} if self.url.startswith("sqlite") else {"application_name": "etl-assets"}
        )
        # hide_parameters: an error's text must never carry row values (SQLAlchemy prints a statement's parameters)
        self.engine = sa.create_engine(
            self.url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
        )
        self.dialect = self.engine.dialect.name
        self.sql: Dialect = dialect_for(self.engine)  # the SQL that differs between PostgreSQL and SQLite
        self.sql.prepare()
        self.q = self.engine.dialect.identifier_preparer.quote
        with self.engine.begin() as conn:
            self.sql.ddl_lock(conn)
            create_system_tables(conn)
        self._tables: dict[str, sa.Table] = {}
        self.nulls = NullTally()

    def __repr__(self) -> str:
        return f"Warehouse({self.engine.url.render_as_string(hide_password=True)})"

    def dispose(self) -> None:
        self.engine.dispose()

    def rate_limiter(self, source: str, calls: int, period_seconds: float) -> RateLimiter:
        return RateLimiter(self.engine, self.sql, source, calls, period_seconds)

    # -- schema ---------------------------------------------------------------------------------------------
    def schema_state(self, source: str, table: str) -> SchemaState:
        """The schema pinned by the source's first load; for a table made elsewhere, its reflected columns."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(schemas.c.columns, schemas.c.accepted, schemas.c.profiles).where(
                    schemas.c.source == source
                )
            ).first()
        if row:
            return SchemaState(json.loads(row[0]), json.loads(row[1] or "{}"), json.loads(row[2] or "{}"))
        insp = sa.inspect(self.engine)
        if not insp.has_table(table):
            return SchemaState()
        return SchemaState(
            {
                c["name"]: kind_of(c["type"])
                for c in insp.get_columns(table)
                if c["name"] not in LINEAGE and c["name"] != ROW_ID
            }
        )

    def pinned_schema(self, source: str, table: str) -> dict[str, str] | None:
        return self.schema_state(source, table).columns

    @functools.cached_property
    def max_columns(self) -> int:
        """Columns a table may have: SQLite's SQLITE_LIMIT_COLUMN of this build (2000 by default), PostgreSQL's
        MaxHeapAttributeNumber (1600)."""
        return self.sql.max_columns()

    def existing_columns(self, name: str) -> frozenset[str]:
        """The columns the table has (none when it does not exist yet)."""
        table = self._tables.get(name)
        if table is not None:
            return frozenset(table.c.keys())
        insp = sa.inspect(self.engine)
        return frozenset(c["name"] for c in insp.get_columns(name)) if insp.has_table(name) else frozenset()

    def ensure_table(
        self,
        name: str,
        schema: dict[str, str],
        key: list[str],
        *,
        source: str | None = None,
        location_index: bool = False,
    ) -> sa.Table:
        """Create the table, or add the schema's columns it lacks (schema evolution only ever adds).
        `location_index`: an index on `_etl_source`, for the rows a file's new version replaces (see `load`)."""
        table = self._tables.get(name)
        if table is not None and all(c in table.c for c in schema):
            return table
        cols = [sa.Column(c, sql_type(k, self.dialect), primary_key=c in key) for c, k in schema.items()]
        if key == [ROW_ID]:
            cols.insert(0, sa.Column(ROW_ID, sa.Text, primary_key=True))
        cols += [sa.Column(c, sql_type(k, self.dialect)) for c, k in LINEAGE.items()]
        step = "CREATE TABLE"
        try:
            with self.engine.begin() as conn:
                self.sql.ddl_lock(conn)
                insp = sa.inspect(conn)
                if insp.has_table(name):
                    have = {c["name"] for c in insp.get_columns(name)}
                    step = "ALTER TABLE ADD COLUMN"
                    for col in cols:
                        if col.name not in have:
                            log.warning("table %s: adding column %s (%s)", name, col.name, col.type)
                            conn.exec_driver_sql(
                                f"ALTER TABLE {self.q(name)} ADD COLUMN {self.q(col.name)} "
                                f"{col.type.compile(self.engine.dialect)}"
                            )
                    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                else:
                    table = sa.Table(name, sa.MetaData(), *self.sql.layout(cols))
                    table.create(conn)
                if location_index:  # also for a table made before: once per process, a no-op when it exists
                    step = "CREATE INDEX"
                    conn.exec_driver_sql(
                        f"CREATE INDEX IF NOT EXISTS {self.q(index_name(name, '_etl_source'))} "
                        f"ON {self.q(name)} ({self.q('_etl_source')})"
                    )
        except sa.exc.StatementError as exc:
            raise statement_error(source or name, name, step, exc) from None
        self._tables[name] = table
        return table

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint(self, source: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            raw = conn.execute(
                sa.select(checkpoints.c.position).where(checkpoints.c.source == source)
            ).scalar()
        return json.loads(raw) if raw else None

    def _move_checkpoint(
        self,
        conn: sa.Connection,
        source: str,
        position: Mapping[str, Any],
        location: str,
        run_id: str,
        now: datetime,
    ) -> None:
        """A file source's checkpoint is a map of files: only this batch's file entry is written, into the
        stored map under a row lock, so runs of different files of one source (partitions, a parallel backfill)
        never overwrite each other's progress. Other positions (pages, feeds) replace the stored one."""
        files = position.get("files")
        if isinstance(files, Mapping) and location in files:
            empty = {"source": source, "position": '{"files": {}}', "run_id": run_id, "updated_at": now}
            # the row first (a no-op when it exists), then lock it: two first batches cannot both insert
            conn.execute(self.sql.insert(checkpoints).values(**empty).on_conflict_do_nothing())
            raw = conn.execute(
                sa.select(checkpoints.c.position).where(checkpoints.c.source == source).with_for_update()
            ).scalar_one()
            stored = json.loads(raw)
            position = {**stored, "files": {**stored.get("files", {}), location: files[location]}}
        self._upsert(
            conn,
            checkpoints,
            ["source"],
            {
                "source": source,
                "position": json.dumps(position, sort_keys=True, default=str),
                "run_id": run_id,
                "updated_at": now,
            },
        )

    def _upsert(self, conn: sa.Connection, table: sa.Table, keys: list[str], values: dict[str, Any]) -> None:
        ins = self.sql.insert(table).values(**values)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
            )
        )

    # -- load -----------------------------------------------------------------------------------------------
    def load(
        self,
        *,
        source: str,
        table: sa.Table | None,
        key: list[str],
        rows: pd.DataFrame,
        quarantined: list[QuarantinedRow],
        position: Mapping[str, Any],
        run_id: str,
        location: str,
        schema: SchemaState | None = None,
        drift_events: list[DriftEvent] | None = None,
        replaces: str | None = None,
    ) -> LoadResult:
        """Upsert rows, record quarantine and drift, pin the schema and move the checkpoint: one transaction.
        `replaces`: the row-id prefix of a file version (`file_row_prefix`) whose first batch this is; the rows of
        the file (`_etl_source` = `location`) from any other version are deleted in the same transaction.

        A database error is one SourceError naming the table and the statement's kind, never the SQL or a value."""
        result = LoadResult(quarantined=len(quarantined))
        now = datetime.now(UTC)
        step = ["BEGIN"]  # the statement under way, for the error line
        try:
            with self.engine.begin() as conn:
                if table is not None and replaces is not None:
                    step[0] = "DELETE of the file's earlier version"
                    result.deleted = conn.execute(
                        sa.text(
                            f"DELETE FROM {self.q(table.name)} WHERE {self.q('_etl_source')} = :loc "
                            f"AND {self.q(ROW_ID)} NOT LIKE :keep"
                        ),
                        {"loc": location, "keep": replaces + "%"},
                    ).rowcount
                if table is not None and len(rows):
                    rows = rows.drop_duplicates(
                        subset=key, keep="last"
                    )  # one statement may touch a key only once
                    lineage = {"_etl_run_id": run_id, "_etl_loaded_at": now, "_etl_source": location}
                    result.inserted, result.updated = self.sql.upsert(conn, table, key, rows, lineage, step)
                    self.nulls.add(source, table.name, run_id, rows)  # counted before the commit: a bound
                if quarantined:
                    step[0] = "INSERT into etl_quarantine"
                    conn.execute(
                        quarantine.insert(),
                        [
                            {**q, "source": source, "run_id": run_id, "quarantined_at": now}
                            for q in quarantined
                        ],
                    )
                faults.hit("before_checkpoint_write")
                step[0] = "checkpoint upsert"
                self._move_checkpoint(conn, source, position, location, run_id, now)
                if schema is not None and schema.columns and table is not None:
                    step[0] = "etl_schemas upsert"
                    self._upsert(
                        conn,
                        schemas,
                        ["source"],
                        {
                            "source": source,
                            "table_name": table.name,
                            "columns": json.dumps(schema.columns),
                            "accepted": json.dumps(schema.accepted),
                            "profiles": json.dumps(schema.profiles),
                            "updated_at": now,
                        },
                    )
                if drift_events:
                    step[0] = "INSERT into etl_schema_drift"
                    self._record_drift(conn, source, run_id, drift_events, now)
                faults.hit("before_commit")
                step[0] = "COMMIT"
        except (sa.exc.StatementError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise statement_error(
                source, table.name if table is not None else "(none)", step[0], exc
            ) from None
        return result

    def _record_drift(
        self, conn: sa.Connection, source: str, run_id: str, events: list[DriftEvent], now: datetime
    ) -> None:
        conn.execute(
            schema_drift.insert(),
            [{**e, "source": source, "run_id": run_id, "detected_at": now} for e in events],
        )

    def record_drift(self, source: str, run_id: str, events: list[DriftEvent]) -> None:
        """Drift that stopped a load: recorded on its own, the batch itself was not loaded."""
        with self.engine.begin() as conn:
            self._record_drift(conn, source, run_id, events, datetime.now(UTC))

    # -- runs and stats -------------------------------------------------------------------------------------
    def record_run(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            if values.get("status") == "started":
                where = (runs.c.run_id == values["run_id"], runs.c.source == values["source"])
                if conn.execute(sa.select(runs.c.run_id).where(*where)).first() is None:
                    self.nulls.started(values["source"], values["run_id"])
            self._upsert(conn, runs, ["run_id", "source"], values)

    def mark_abandoned(self, source: str, run_id: str) -> list[str]:
        """Runs of the source still `started` although the caller holds the source's lock alone: their process
        died."""
        with self.engine.begin() as conn:
            dead = [
                r[0]
                for r in conn.execute(
                    sa.select(runs.c.run_id).where(
                        runs.c.source == source, runs.c.status == "started", runs.c.run_id != run_id
                    )
                )
            ]
            if dead:
                conn.execute(
                    runs.update()
                    .where(runs.c.source == source, runs.c.run_id.in_(dead))
                    .values(
                        status="abandoned",
                        finished_at=datetime.now(UTC),
                        error="the run ended without finishing (its process died); the next run resumed at its "
                        "checkpoint",
                    )
                )
        return dead
