"""The warehouse: SQLite by default, PostgreSQL in production, through SQLAlchemy.

Each batch lands in ONE transaction: its rows are upserted by primary key (PostgreSQL: COPY into a staging
table and one INSERT ... ON CONFLICT), its quarantined rows are recorded, and the source's checkpoint moves.
A crash anywhere before the commit leaves the table and the checkpoint as they were.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import copy_binary, faults
from .errors import SourceError
from .ratelimit import RateLimiter
from .reconcile import SchemaState

log = logging.getLogger(__name__)

LINEAGE = {"_etl_run_id": "string", "_etl_loaded_at": "timestamp", "_etl_source": "string"}
ROW_ID = "_etl_row_id"  # the key of a table whose source has no primary_key
DEFAULT_DIR = ".etl"
SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999  # bound parameters per statement

metadata = sa.MetaData()
checkpoints = sa.Table(
    "etl_checkpoints", metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
quarantine = sa.Table(
    "etl_quarantine", metadata,
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
    "etl_runs", metadata,
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
    "etl_schema_drift", metadata,
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
    "etl_schemas", metadata,  # the schema each source's table was created with: declared, or inferred and pinned
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("columns", sa.Text, nullable=False),
    sa.Column("accepted", sa.Text),  # renames applied before (observed -> expected): they do not alert again
    sa.Column("profiles", sa.Text),  # value profile per column from the last load, evidence for rename matching
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
rate_limits = sa.Table(
    "etl_rate_limits", metadata,  # one row per rate-limited source: its settings, and the lock its workers share
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("period_seconds", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
rate_limit_slots = sa.Table(
    "etl_rate_limit_slots", metadata,  # requests of the current window (epoch seconds), see ratelimit.py
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False, index=True),
    sa.Column("at", sa.Float(precision=53), nullable=False),  # granted
    sa.Column("done_at", sa.Float(precision=53), nullable=False),  # response in (until then: a hold)
)
SYSTEM_TABLES = tuple(metadata.tables)


def default_url() -> str:
    Path(DEFAULT_DIR).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(DEFAULT_DIR, 'warehouse.db').resolve()}"


def normalize_url(url: str) -> str:
    """Every PostgreSQL URL uses psycopg 3: its COPY is the fast path."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sql_type(kind: str, dialect: str) -> sa.types.TypeEngine:
    if kind == "json":  # SQLite's JSON type name has NUMERIC affinity and would turn '1' into 1
        return postgresql.JSONB() if dialect == "postgresql" else sa.Text()
    return {
        "string": sa.Text(),
        "integer": sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: a sole INTEGER key is the rowid
        "float": sa.Float(precision=53),
        "boolean": sa.Boolean(),
        "timestamp": sa.DateTime(timezone=True),
        "date": sa.Date(),
    }[kind]


def kind_of(column_type: sa.types.TypeEngine) -> str:
    name = type(column_type).__name__.upper()
    if "JSON" in name:
        return "json"
    if "INT" in name:
        return "integer"
    if any(t in name for t in ("FLOAT", "DOUBLE", "REAL", "NUMERIC")):
        return "float"
    if "BOOL" in name:
        return "boolean"
    if "TIMESTAMP" in name or "DATETIME" in name:
        return "timestamp"
    if name == "DATE":
        return "date"
    return "string"


def file_row_prefix(location: str, version: str) -> str:
    """What `_etl_row_id` of a file's row starts with, without a primary key: 16 hex digits of the path's hash and
    16 of the content's SHA-256 (`<path>.<version>.<row number>`). A new version of the file deletes the path's
    rows that do not start with its own prefix (`load(replaces=...)`)."""
    return f"{hashlib.sha256(location.encode('utf-8')).hexdigest()[:16]}.{version[:16]}."


def _any(terms: list[str]) -> str:
    """`a OR b OR ...` as a balanced tree: its depth grows with log2 of the terms, not with their number."""
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    return f"({_any(terms[:mid])} OR {_any(terms[mid:])})"


_WIDTH = {"integer": 8, "float": 8, "timestamp": 8, "date": 4, "boolean": 1}  # PostgreSQL: size = alignment
PG_PAGE_SHARE = 4096  # bytes of a row's values beyond which padding is worth saving (a row must fit 8160)


def _pg_layout(cols: list[sa.Column]) -> list[sa.Column]:
    """A wide table's columns grouped by alignment (8-byte types, then 4, 1, then text): PostgreSQL pads a value
    to its type's alignment, and a row must fit in one 8 KB page; 1000 columns alternating bigint and short text
    took 8176 bytes in source order. A narrow table keeps its source order."""
    def width(c: sa.Column) -> int:
        return _WIDTH.get(kind_of(c.type), 0)

    end = 0
    for c in cols:
        w = width(c)
        end = (-(-end // w) * w + w) if w else end + 8  # text: a short value and its 1-byte header, unaligned
    if end <= PG_PAGE_SHARE:
        return cols
    return sorted(cols, key=lambda c: -width(c) or 0)


def _index_name(table: str, column: str) -> str:
    name = f"ix_{table}_{column}"
    if len(name.encode("utf-8")) <= 63:  # PostgreSQL's identifier limit
        return name
    return f"ix_{hashlib.sha1(table.encode('utf-8')).hexdigest()[:12]}_{column}"


_RETRYABLE = {"OperationalError", "InterfaceError", "IntegrityError"}  # PEP 249: connection lost, lock, a race


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
        "" if retry else " (if it fails the same way, report this line)")
    if kinds & {"OperationalError", "InterfaceError"} and not isinstance(orig, sqlite3.Error):  # the server went
        fix = "check ETL_WAREHOUSE_URL and that the warehouse is up; " + fix
    if getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in line:  # a concurrent loader
        retry = True
        line = line.split(" DETAIL", 1)[0]
        fix = ("another run of this source landed the same keys at the same moment; the batch did not land and a "
               "rerun (or the step's RetryPolicy) lands it again")
    if getattr(orig, "sqlstate", None) == "54000":  # program_limit_exceeded: "row is too big"
        fix = ("a PostgreSQL row must fit in one 8 KB page, and numbers, unlike long text, cannot move out of it: "
               "load fewer columns (declare `columns`, drift.on_new_column: ignore) or declare wide numeric ones "
               "as string")
    return SourceError(source, f"table {table}", f"{step} failed: {type(orig).__name__}: {line[:200]}", fix,
                       retryable=retry)


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0  # rows of a file's earlier version, replaced by this batch
    quarantined: int = 0


class Warehouse:
    def __init__(self, url: str | None = None):
        self.url = normalize_url(url or os.environ.get("ETL_WAREHOUSE_URL") or default_url())
        # application_name lets an operator (or a chaos test) find the loader's sessions in pg_stat_activity
        connect_args = {"timeout": 60} if self.url.startswith("sqlite") else {"application_name": "etl-assets"}
        # hide_parameters: an error's text must never carry row values (SQLAlchemy prints a statement's parameters)
        self.engine = sa.create_engine(self.url, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads, then writes,
            # fails at once with "database is locked" when another process wrote in between.
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self.q = self.engine.dialect.identifier_preparer.quote
        with self.engine.begin() as conn:
            self._ddl_lock(conn)
            metadata.create_all(conn, checkfirst=True)
        self._tables: dict[str, sa.Table] = {}

    def __repr__(self) -> str:
        return f"Warehouse({self.engine.url.render_as_string(hide_password=True)})"

    def dispose(self) -> None:
        self.engine.dispose()

    def _ddl_lock(self, conn: sa.Connection) -> None:
        """Workers starting together must not race to create the same table (PostgreSQL's catalog refuses the
        second CREATE even with IF NOT EXISTS); SQLite's BEGIN IMMEDIATE already serialises them."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('etl-assets ddl'))"))

    def rate_limiter(self, source: str, calls: int, period_seconds: float) -> RateLimiter:
        return RateLimiter(self.engine, rate_limits, rate_limit_slots, source, calls, period_seconds)

    # -- schema ---------------------------------------------------------------------------------------------
    def schema_state(self, source: str, table: str) -> SchemaState:
        """The schema pinned by the source's first load; for a table made elsewhere, its reflected columns."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schemas.c.columns, schemas.c.accepted, schemas.c.profiles)
                               .where(schemas.c.source == source)).first()
        if row:
            return SchemaState(json.loads(row[0]), json.loads(row[1] or "{}"), json.loads(row[2] or "{}"))
        insp = sa.inspect(self.engine)
        if not insp.has_table(table):
            return SchemaState()
        return SchemaState({c["name"]: kind_of(c["type"]) for c in insp.get_columns(table)
                            if c["name"] not in LINEAGE and c["name"] != ROW_ID})

    def pinned_schema(self, source: str, table: str) -> dict[str, str] | None:
        return self.schema_state(source, table).columns

    @functools.cached_property
    def max_columns(self) -> int:
        """Columns a table may have: SQLite's SQLITE_LIMIT_COLUMN of this build (2000 by default), PostgreSQL's
        MaxHeapAttributeNumber (1600)."""
        if self.dialect != "sqlite":
            return 1600
        with self.engine.connect() as conn:
            return int(conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_COLUMN))

    def existing_columns(self, name: str) -> frozenset[str]:
        """The columns the table has (none when it does not exist yet)."""
        table = self._tables.get(name)
        if table is not None:
            return frozenset(table.c.keys())
        insp = sa.inspect(self.engine)
        return frozenset(c["name"] for c in insp.get_columns(name)) if insp.has_table(name) else frozenset()

    def ensure_table(self, name: str, schema: dict[str, str], key: list[str], *, source: str | None = None,
                     location_index: bool = False) -> sa.Table:
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
                self._ddl_lock(conn)
                insp = sa.inspect(conn)
                if insp.has_table(name):
                    have = {c["name"] for c in insp.get_columns(name)}
                    step = "ALTER TABLE ADD COLUMN"
                    for col in cols:
                        if col.name not in have:
                            log.warning("table %s: adding column %s (%s)", name, col.name, col.type)
                            conn.exec_driver_sql(f"ALTER TABLE {self.q(name)} ADD COLUMN {self.q(col.name)} "
                                                 f"{col.type.compile(self.engine.dialect)}")
                    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                else:
                    table = sa.Table(name, sa.MetaData(), *(_pg_layout(cols) if self.dialect == "postgresql"
                                                             else cols))
                    table.create(conn)
                if location_index:  # also for a table made before: once per process, a no-op when it exists
                    step = "CREATE INDEX"
                    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {self.q(_index_name(name, '_etl_source'))} "
                                         f"ON {self.q(name)} ({self.q('_etl_source')})")
        except sa.exc.StatementError as exc:
            raise statement_error(source or name, name, step, exc) from None
        self._tables[name] = table
        return table

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint(self, source: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(checkpoints.c.position).where(checkpoints.c.source == source)).scalar()
        return json.loads(raw) if raw else None

    def _upsert(self, conn: sa.Connection, table: sa.Table, keys: list[str], values: dict[str, Any]) -> None:
        ins = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table).values(**values)
        conn.execute(ins.on_conflict_do_update(index_elements=keys,
                                               set_={k: v for k, v in values.items() if k not in keys}))

    # -- load -----------------------------------------------------------------------------------------------
    def load(self, *, source: str, table: sa.Table | None, key: list[str], rows: pd.DataFrame, quarantined: list[dict],
             position: dict, run_id: str, location: str, schema: SchemaState | None = None,
             drift_events: list[dict] | None = None, replaces: str | None = None) -> LoadResult:
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
                    result.deleted = conn.execute(sa.text(
                        f"DELETE FROM {self.q(table.name)} WHERE {self.q('_etl_source')} = :loc "
                        f"AND {self.q(ROW_ID)} NOT LIKE :keep"), {"loc": location, "keep": replaces + "%"}).rowcount
                if table is not None and len(rows):
                    rows = rows.drop_duplicates(subset=key, keep="last")  # one statement may touch a key only once
                    lineage = {"_etl_run_id": run_id, "_etl_loaded_at": now, "_etl_source": location}
                    upsert = self._upsert_pg if self.dialect == "postgresql" else self._upsert_sqlite
                    result.inserted, result.updated = upsert(conn, table, key, rows, lineage, step)
                if quarantined:
                    step[0] = "INSERT into etl_quarantine"
                    conn.execute(quarantine.insert(), [{**q, "source": source, "run_id": run_id,
                                                        "quarantined_at": now} for q in quarantined])
                faults.hit("before_checkpoint_write")
                step[0] = "checkpoint upsert"
                self._upsert(conn, checkpoints, ["source"], {
                    "source": source, "position": json.dumps(position, sort_keys=True, default=str),
                    "run_id": run_id, "updated_at": now})
                if schema is not None and schema.columns and table is not None:
                    step[0] = "etl_schemas upsert"
                    self._upsert(conn, schemas, ["source"], {
                        "source": source, "table_name": table.name, "columns": json.dumps(schema.columns),
                        "accepted": json.dumps(schema.accepted), "profiles": json.dumps(schema.profiles),
                        "updated_at": now})
                if drift_events:
                    step[0] = "INSERT into etl_schema_drift"
                    self._record_drift(conn, source, run_id, drift_events, now)
                faults.hit("before_commit")
                step[0] = "COMMIT"
        except (sa.exc.StatementError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise statement_error(source, table.name if table is not None else "(none)", step[0], exc) from None
        return result

    def _record_drift(self, conn: sa.Connection, source: str, run_id: str, events: list[dict], now: datetime) -> None:
        conn.execute(schema_drift.insert(), [{**e, "source": source, "run_id": run_id, "detected_at": now}
                                             for e in events])

    def record_drift(self, source: str, run_id: str, events: list[dict]) -> None:
        """Drift that stopped a load: recorded on its own, the batch itself was not loaded."""
        with self.engine.begin() as conn:
            self._record_drift(conn, source, run_id, events, datetime.now(UTC))

    def _set_clause(self, table: sa.Table, key: list[str], cols: list[str], excluded: str) -> tuple[str, str]:
        q, t = self.q, self.q(table.name)
        data = [c for c in cols if c not in key and c not in LINEAGE]
        sets = ", ".join(f"{q(c)} = {excluded}.{q(c)}" for c in cols if c not in key)
        if not data:
            return sets, "TRUE"
        changed = _any([f"{t}.{q(c)} IS DISTINCT FROM {excluded}.{q(c)}" for c in data])
        return sets, changed

    def _binary_encodings(self, table: sa.Table) -> dict[str, str | None]:
        return {c.name: copy_binary.SQL_TYPES.get(c.type.compile(dialect=self.engine.dialect)) for c in table.c}

    def _kinds(self, table: sa.Table, cols: list[str]) -> dict[str, str | None]:
        return {c: kind_of(table.c[c].type) if c in table.c else None for c in cols}

    def _sqlite_variables(self, conn: sa.Connection) -> int:
        """Bound parameters one statement may hold: this build's SQLITE_LIMIT_VARIABLE_NUMBER (capped)."""
        limit = conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return min(SQLITE_MAX_VARIABLES, int(limit))

    def _upsert_pg(self, conn: sa.Connection, table: sa.Table, key: list[str], rows: pd.DataFrame,
                   lineage: dict[str, Any], step: list[str]) -> tuple[int, int]:
        """COPY the batch into a temp staging table; INSERT the rows whose key is new (an anti-join: a plain
        insert, not ON CONFLICT's speculative one, which took twice as long); then, only if some keys already
        existed, UPDATE the rows where a value changed. A key inserted meanwhile by another writer fails the
        transaction (unique violation) and the batch is retried whole - never half-applied."""
        q, t, data = self.q, self.q(table.name), list(rows.columns)
        cols = data + list(lineage)
        raw = conn.connection.driver_connection
        binary = copy_binary.encode(rows, self._binary_encodings(table))
        payload = binary if binary is not None else _pg_copy_text(rows, self._kinds(table, data))
        options = "FORMAT binary" if binary is not None else "NULL ''"
        step[0] = "COPY into the staging table"
        with raw.cursor() as cur:
            # A batch is small beside the table it lands in: probe the key index per staged row (O(batch)), never
            # hash the whole table (O(table) per batch, so quadratic over a load). JIT costs more than it saves.
            cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL jit = off")
            cur.execute(f"CREATE TEMP TABLE _etl_stage (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP")
            with cur.copy(f"COPY _etl_stage ({', '.join(q(c) for c in data)}) FROM STDIN ({options})") as copy:
                piece = 8 << 20
                view = memoryview(payload) if binary is not None else payload  # slices of a view copy nothing
                for i in range(0, len(payload), piece):
                    copy.write(view[i:i + piece])
                del view
            del payload
            match = " AND ".join(f"{t}.{q(k)} = s.{q(k)}" for k in key)
            step[0] = "INSERT of new rows"
            cur.execute(f"INSERT INTO {t} ({', '.join(q(c) for c in cols)}) "
                        f"SELECT {', '.join('s.' + q(c) for c in data)}, %s, %s, %s FROM _etl_stage s "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {match})", list(lineage.values()))
            inserted, updated = cur.rowcount, 0
            if inserted < len(rows):  # some keys existed: rewrite those whose values changed
                _, changed = self._set_clause(table, key, cols, "s")
                sets = ", ".join([f"{q(c)} = s.{q(c)}" for c in data if c not in key] +
                                 [f"{q(c)} = %s" for c in lineage])
                step[0] = "UPDATE of changed rows"
                cur.execute(f"UPDATE {t} SET {sets} FROM _etl_stage s WHERE {match} AND ({changed})",
                            list(lineage.values()))
                updated = cur.rowcount
            cur.execute("DROP TABLE _etl_stage")
        return int(inserted), int(updated)

    def _upsert_sqlite(self, conn: sa.Connection, table: sa.Table, key: list[str], rows: pd.DataFrame,
                       lineage: dict[str, Any], step: list[str]) -> tuple[int, int]:
        """INSERT ... ON CONFLICT DO UPDATE ... WHERE <changed> straight into the table (a staging copy cost a
        third more), as many rows per statement as its bound parameters allow; the keys already present are
        counted first, in one statement. The <changed> test is a balanced tree (`_any`): a chain of 1000 ORs
        is deeper than SQLite's expression limit (SQLITE_MAX_EXPR_DEPTH, 1000)."""
        q, data, t = self.q, list(rows.columns), self.q(table.name)
        cols = data + list(lineage)
        values = _sqlite_columns(rows, self._kinds(table, data))
        if len(key) == 1:  # a flat JSON array: json_each's value is the key itself (2.5x faster than extracting)
            keys = json.dumps(values[data.index(key[0])].tolist())
            match = f"{t}.{q(key[0])} = j.value"
        else:
            keys = json.dumps(list(zip(*(values[data.index(k)] for k in key), strict=True)))
            match = " AND ".join(f"{t}.{q(k)} = json_extract(j.value, '$[{i}]')" for i, k in enumerate(key))
        step[0] = "SELECT of the keys present"
        existing = conn.exec_driver_sql(
            f"SELECT count(*) FROM json_each(?) j WHERE EXISTS (SELECT 1 FROM {t} WHERE {match})", (keys,)).scalar()
        sets, changed = self._set_clause(table, key, cols, "excluded")
        changed = changed.replace("IS DISTINCT FROM", "IS NOT")
        action = f"DO UPDATE SET {sets} WHERE {changed}" if sets else "DO NOTHING"
        before = conn.exec_driver_sql("SELECT total_changes()").scalar()
        constants = [repeat(v.isoformat() if isinstance(v, datetime) else v) for v in lineage.values()]
        records = list(zip(*values, *constants))  # noqa: B905 - the constants repeat
        # Many rows per statement, not executemany: sqlite3 lets go of the GIL around every step, and with the
        # loader's other threads busy each row then waited for it again (300k rows: 1.2 s alone, minutes beside a
        # busy thread).
        per = max(1, self._sqlite_variables(conn) // len(cols))
        row = "(" + ", ".join("?" for _ in cols) + ")"
        head = f"INSERT INTO {t} ({', '.join(q(c) for c in cols)}) VALUES "
        tail = f" ON CONFLICT ({', '.join(q(k) for k in key)}) {action}"
        step[0] = "INSERT ... ON CONFLICT DO UPDATE (upsert)"
        for i in range(0, len(records), per):
            part = records[i:i + per]
            conn.exec_driver_sql(head + ", ".join([row] * len(part)) + tail, tuple(chain.from_iterable(part)))
        changes = conn.exec_driver_sql("SELECT total_changes()").scalar() - before
        inserted = len(rows) - int(existing)
        return inserted, int(changes - inserted)

    # -- runs and stats -------------------------------------------------------------------------------------
    def record_run(self, **values: Any) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, runs, ["run_id", "source"], values)

    def mark_abandoned(self, source: str, run_id: str) -> list[str]:
        """Runs of the source still `started` although the caller holds the source's lock alone: their process
        died."""
        with self.engine.begin() as conn:
            dead = [r[0] for r in conn.execute(sa.select(runs.c.run_id).where(
                runs.c.source == source, runs.c.status == "started", runs.c.run_id != run_id))]
            if dead:
                conn.execute(runs.update().where(runs.c.source == source, runs.c.run_id.in_(dead)).values(
                    status="abandoned", finished_at=datetime.now(UTC),
                    error="the run ended without finishing (its process died); the next run resumed at its "
                          "checkpoint"))
        return dead

    def row_count(self, table: str) -> int:
        if not sa.inspect(self.engine).has_table(table):
            return 0
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {self.q(table)}")).scalar())

    def duplicate_keys(self, table: str, key: list[str]) -> int:
        """Keys held by more than one row (0 whenever the table has its primary key constraint)."""
        insp = sa.inspect(self.engine)
        if insp.has_table(table) and set(insp.get_pk_constraint(table)["constrained_columns"] or []) == set(key):
            return 0  # the database enforces it: no need to scan (and group) the whole table after every run
        cols = ", ".join(self.q(k) for k in key)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(
                f"SELECT count(*) FROM (SELECT {cols} FROM {self.q(table)} GROUP BY {cols} HAVING count(*) > 1) d"
            )).scalar())

    def null_counts(self, table: str, columns: list[str], run_id: str) -> dict[str, int]:
        """NULLs per column among the rows the run wrote."""
        if not columns or not sa.inspect(self.engine).has_table(table):
            return {c: 0 for c in columns}
        sums = ", ".join(f"sum(CASE WHEN {self.q(c)} IS NULL THEN 1 ELSE 0 END)" for c in columns)
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT {sums} FROM {self.q(table)} WHERE _etl_run_id = :r"),
                               {"r": run_id}).one()
        return {c: int(v or 0) for c, v in zip(columns, row, strict=True)}

    def row_counts(self) -> dict[str, int]:
        names = sorted(sa.inspect(self.engine).get_table_names())
        return {n: self.row_count(n) for n in names}


def _column_values(s: pd.Series, kind: str | None, dialect: str) -> np.ndarray:
    """One column of a typed batch (schema.Coerced.good) as driver-ready values, vectorised per dtype.

    PostgreSQL (text COPY): str (or int/float, which the csv writer formats in C), NULL as "" - an empty
    string never reaches the warehouse: coercion reads it as NULL. SQLite: Python values, None for NULL,
    timestamps and dates as ISO text (what `datetime.isoformat()` gives).
    """
    pg = dialect == "postgresql"
    null_value = "" if pg else None
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        aware = isinstance(dtype, pd.DatetimeTZDtype)
        arr = (s.dt.tz_convert(None) if aware else s).to_numpy()
        mask = np.isnat(arr)
        if kind == "date":
            text = np.datetime_as_string(arr, unit="D").astype(object)
        else:
            suffix = "+00:00" if aware else ""
            text = _iso_seconds(arr, suffix)
        text[mask] = null_value
        return text
    if dtype == "boolean" or dtype.kind == "b":
        if pg:
            out = np.where(s.fillna(False).to_numpy(dtype=bool), "t", "f").astype(object)
            out[s.isna().to_numpy()] = null_value
            return out
        return s.to_numpy(dtype=object, na_value=None)
    if dtype.kind in "iuf":  # int64/float64 and the nullable Int64/Float64
        mask = pd.isna(s).to_numpy()  # a float NaN (a frame not made by coerce) is NULL too, never 'NaN'
        arr = s.to_numpy(dtype=object, na_value=None)
        if pg:  # Python's str of an int, and of a float (shortest round-trip repr), as PostgreSQL reads them
            arr = np.array(list(map(str, arr)), dtype=object)
        arr[mask] = null_value
        return arr
    arr = s.to_numpy(dtype=object, na_value=None)
    if pd.api.types.infer_dtype(arr, skipna=True) not in ("string", "empty"):
        arr = np.array([_generic(v, pg) for v in arr], dtype=object)
    mask = pd.isna(arr)
    if pg:
        arr = arr.copy()
        arr[mask] = ""
        joined = "\x1f".join(arr)  # one C scan: does any value need escaping at all?
        if any(c in joined for c in _PG_SPECIAL):
            arr = np.array([_pg_escape(v) for v in arr], dtype=object)
    elif mask.any():
        arr = arr.copy()
        arr[mask] = None
    return arr


_PG_SPECIAL = ("\\", "\t", "\n", "\r")


def _pg_escape(v: str) -> str:
    """COPY's text format: backslash, tab, newline and carriage return are escaped."""
    if not any(c in v for c in _PG_SPECIAL):
        return v
    return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _generic(v: Any, pg: bool) -> Any:
    """A value of an object column that is not text (a frame not made by coerce)."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, bool):
        return ("t" if v else "f") if pg else v
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    if isinstance(v, int | float):
        return str(v) if pg else v
    return str(v)


def _iso_seconds(arr: np.ndarray, suffix: str) -> np.ndarray:
    """ISO 8601 text of datetime64 values as `isoformat()` writes them: seconds, or microseconds when a value
    has a fraction (nanoseconds when it has those)."""
    out = np.char.add(np.datetime_as_string(arr, unit="s"), suffix).astype(object)
    valid = ~np.isnat(arr)
    frac = valid & (arr.astype("datetime64[s]") != arr)
    if frac.any():
        sub_us = valid & (arr.astype("datetime64[us]") != arr)
        us = frac & ~sub_us
        out[us] = np.char.add(np.datetime_as_string(arr[us], unit="us"), suffix)
        if sub_us.any():
            out[sub_us] = np.char.add(np.datetime_as_string(arr[sub_us], unit="ns"), suffix)
    return out


def _pg_copy_text(rows: pd.DataFrame, kinds: dict[str, str | None]) -> str:
    """The batch in COPY's text format, built column-wise (numpy) and joined into lines by the C csv writer."""
    cols = [_column_values(rows[c], kinds.get(c), "postgresql") for c in rows.columns]
    # every value is already escaped text (NULL: ""), so a line is a tab join and the batch a newline join
    return "\n".join(map("\t".join, zip(*cols, strict=True))) + "\n"


def _sqlite_columns(rows: pd.DataFrame, kinds: dict[str, str | None]) -> list[np.ndarray]:
    """Plain Python values per column for SQLite's executemany; timestamps and dates as ISO text."""
    return [_column_values(rows[c], kinds.get(c), "sqlite") for c in rows.columns]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (the UI, stats) work while a run writes; a busy timeout rides out a second writer.
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see Warehouse.__init__)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL's NORMAL: a commit is atomic and survives a crash of the process; only a power loss may take back the
    # last commits, rows and checkpoint together (they share each transaction), so a rerun lands them again.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
