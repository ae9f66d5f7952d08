"""Source specs: the `sources.yaml` reference and its validation are one thing.

Every key a user may write is a field below, with its default and its meaning; the README's reference table
is written from these models. A bad file is refused before anything runs, with the source name, the key
path and what was expected. Reading the file (YAML, ${VAR}, error lines) is config_load.py's.
"""

from __future__ import annotations

import codecs
import keyword
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from . import redaction
from .config_pagination import NoPagination, Pagination, Strict
from .cron import cron_problem
from .types import ColumnType

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# An RSS/Atom entry always flattens to these columns (see extract/rss.py).
FEED_COLUMNS: dict[str, str] = {
    "id": "string",
    "title": "string",
    "link": "string",
    "summary": "string",
    "published": "timestamp",
    "updated": "timestamp",
    "author": "string",
    "tags": "json",
}

# PostgreSQL's NAMEDATALEN - 1: a longer table name fails at CREATE TABLE, a longer column name is cut short.
MAX_IDENTIFIER_BYTES = 63
# Names Dagster refuses for an asset (dagster._core.definitions.utils.DISALLOWED_NAMES, Python keywords among
# them), and `all`, whose job ingest_all is the every-source job. test_validate.py checks the list against Dagster's.
RESERVED_NAMES = frozenset(
    {
        "context",
        "conf",
        "config",
        "meta",
        "arg_dict",
        "dict",
        "input_arg_dict",
        "output_arg_dict",
        "int",
        "str",
        "float",
        "bool",
        "input",
        "output",
        "type",
        "all",
        *keyword.kwlist,
    }
)


class ConfigError(ValueError):
    """A sources file that cannot be used; the message names the file, source and key (secrets masked)."""

    def __init__(self, message: str):
        super().__init__(redaction.redact(message))


class RetrySpec(Strict):
    max_retries: int = Field(
        default=3, ge=0, le=50, description="Step retries (Dagster RetryPolicy) and HTTP retries."
    )
    delay_seconds: float = Field(
        default=1.0, ge=0, description="First backoff delay; doubles each attempt, with jitter."
    )
    max_delay_seconds: float = Field(default=60.0, gt=0, description="Cap of one HTTP backoff delay.")


class DriftSpec(Strict):
    auto_map_threshold: float = Field(
        default=0.85, ge=0, le=1, description="Apply a rename at or above this confidence."
    )
    suggest_threshold: float = Field(
        default=0.6, ge=0, le=1, description="Record a suggestion (not applied) at or above."
    )
    on_missing_required: Literal["fail", "quarantine"] = "fail"
    on_new_column: Literal["evolve", "ignore", "fail"] = "evolve"
    on_swap: Literal["fail", "warn"] = Field(
        default="fail",
        description="Headers whose values look swapped: stop, or load as the header says with a WARN.",
    )
    required: list[str] | None = Field(
        default=None, description="Required columns; default: every declared column."
    )

    @model_validator(mode="after")
    def _ordered(self) -> DriftSpec:
        if self.suggest_threshold > self.auto_map_threshold:
            raise ValueError("suggest_threshold must not be above auto_map_threshold")
        return self


class RateLimitSpec(Strict):
    calls: int = Field(..., gt=0)
    period_seconds: float = Field(..., gt=0)


class IncrementalSpec(Strict):
    param: str = Field(..., description="Query parameter that receives the high-watermark.")
    field: str = Field(..., description="Record field whose maximum becomes the next high-watermark.")


class _SourceBase(Strict):
    name: str = Field(default="", description="The mapping key; also the asset key.")
    table: str | None = Field(default=None, description="Warehouse table; default: the source name.")
    description: str | None = None
    primary_key: list[str] | None = None
    columns: dict[str, ColumnType] | None = None
    retry: RetrySpec = RetrySpec()
    schedule: str | None = Field(
        default=None, description="Cron expression; a schedule runs ingest_<source>."
    )
    drift: DriftSpec = DriftSpec()
    column_map: dict[str, str] = Field(
        default_factory=dict, description="Observed column -> expected column."
    )
    date_format: str | dict[str, str] | None = Field(
        default=None,
        description="strftime format that reads every value of the date and timestamp columns, or a mapping "
        "column -> format; default: ISO 8601, then the column's one day/month order.",
    )
    dayfirst: bool | None = Field(
        default=None,
        description="Numeric day/month dates (01/02/2026) are day-first (true) or month-first (false); "
        "default: decided from each column's values.",
    )

    @field_validator("primary_key", mode="before")
    @classmethod
    def _pk_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        problem = cron_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("columns")
    @classmethod
    def _column_names(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        long = [c for c in v or {} if len(c.encode()) > MAX_IDENTIFIER_BYTES]
        if long:
            raise ValueError(
                f"column name(s) {long} longer than {MAX_IDENTIFIER_BYTES} bytes in UTF-8 "
                "(PostgreSQL would cut them short); declare shorter names and map the observed "
                "ones with column_map"
            )
        return v

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def location(self) -> str:
        """Where the source reads: a CSV source's `path`, an API's or a feed's `url`; not redacted."""
        raise NotImplementedError(type(self).__name__)

    if TYPE_CHECKING:
        # Declared for the type checker only: an attribute of this name here at run time would hide ApiSource's
        # field of the same name (pydantic warns, and the parent's property wins). CsvSource and RssSource
        # define it as None.
        @property
        def rate_limit(self) -> RateLimitSpec | None: ...

    @model_validator(mode="after")
    def _pk_in_columns(self) -> _SourceBase:
        self._check_references()
        size = len(self.table_name.encode())
        if size > MAX_IDENTIFIER_BYTES:
            whose = "table" if self.table else "the source name, used as the table name,"
            raise ValueError(
                f"{whose} {self.table_name!r} is {size} bytes in UTF-8, over PostgreSQL's limit of "
                f"{MAX_IDENTIFIER_BYTES} (NAMEDATALEN); fix: set `table:` to a shorter name"
            )
        return self

    def _check_references(self) -> None:
        """Every column the spec names must be declared, when `columns` is: a typo would never match."""
        if not self.columns:
            return
        named = {
            "primary_key": self.primary_key or [],
            "drift.required": self.drift.required or [],
            "column_map values": list(self.column_map.values()),
        }
        problems = [
            f"{key} {missing} not among columns {list(self.columns)}"
            for key, names in named.items()
            if (missing := [c for c in names if c not in self.columns])
        ]
        if problems:
            raise ValueError("; ".join(problems))


def split_glob(path: str) -> tuple[str, str]:
    """(root, pattern below it): the root is the longest leading run of segments without glob magic; a path
    without magic names one file, whose root is its folder. `load_sources` fixes the root to its real path."""
    import glob  # local: this helper is the only user

    p = Path(path)
    if not glob.has_magic(path):
        return str(p.parent), p.name
    parts = p.parts
    n = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return (str(Path(*parts[:n])) if n else "."), "/".join(parts[n:])


class CsvSource(_SourceBase):
    kind: Literal["csv"]
    path: str = Field(..., description="A file or a glob of a drop folder, relative to the sources file.")
    delimiter: str | None = Field(default=None, min_length=1, max_length=1, description="Default: detected.")
    encoding: str | None = Field(
        default=None, description="Default: detected (UTF-8, UTF-8 BOM, UTF-16, latin-1)."
    )
    chunk_rows: int = Field(default=40_000, gt=0, description="Rows per batch (one transaction each).")
    follow_symlinks: bool = Field(
        default=False,
        description="Follow symbolic links in the drop folder, only to targets "
        "inside it; default: a link is skipped with a warning.",
    )
    max_concurrent_files: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Runs of different files (partitions) of this source at once: the limit of its pool "
        "etl/<source>. Above 1, files land in any order (keep 1 when a later file updates an earlier one's keys).",
    )

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            # rot13, base64, zip... are codecs but not text encodings (the flag bytes.decode itself checks)
            if not getattr(codecs.lookup(v), "_is_text_encoding", True):
                raise LookupError(v)
        except LookupError:
            raise ValueError(
                f"unknown text encoding {v!r}; fix: a Python codec name such as utf-8, utf-8-sig, "
                "latin-1, cp1252, utf-16, or leave it out to detect it"
            ) from None
        return v

    @property
    def location(self) -> str:
        return self.path

    @property
    def rate_limit(self) -> None:
        """Only API sources take `rate_limit`."""
        return None

    @property
    def glob_root(self) -> str:
        """The folder the drop folder's walk starts at (real when loaded from sources.yaml)."""
        return split_glob(self.path)[0]

    @property
    def glob_pattern(self) -> str:
        """The part of `path` below `glob_root`, segments separated by '/'."""
        return split_glob(self.path)[1]


MAX_RESPONSE_BYTES = 100 << 20


class _HttpSource(_SourceBase):
    """What every source read over HTTP shares: the budgets of an untrusted server (README "Security")."""

    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Budget of one request attempt, connect to last byte."
    )
    max_response_bytes: int = Field(
        default=MAX_RESPONSE_BYTES, gt=0, description="Largest answer accepted, counted after decompression."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Other hosts that pagination links and redirects may lead to "
        "(host, host:port, *.domain, scheme://host:port); the "
        "source's headers go to them too.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        from .origin import parse_allowed_host  # local: specs load without urllib3

        for entry in v:
            parse_allowed_host(entry)
        return v


class ApiSource(_HttpSource):
    kind: Literal["api"]
    url: str
    records_path: str = Field(
        default="", description="Dot path to the list of records; empty: the body is the list."
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters; values may use ${ENV_VAR}."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Values may use ${ENV_VAR}; secret: never logged, sent to no other host.",
    )
    pagination: Pagination = NoPagination(type="none")
    max_pages: int = Field(
        default=10_000,
        gt=0,
        description="Pages one run follows; beyond, the run lands what it read and fails (a rerun resumes).",
    )
    rate_limit: RateLimitSpec | None = None
    incremental: IncrementalSpec | None = None
    batch_rows: int = Field(
        default=1000, gt=0, description="Pages land together (one transaction) until this many rows."
    )
    batch_seconds: float = Field(
        default=5.0, gt=0, description="... or until pages have been read this long."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError(f"expected an http(s):// URL, got {v!r}")
        return v

    @property
    def location(self) -> str:
        return self.url


class RssSource(_HttpSource):
    kind: Literal["rss"]
    url: str = Field(..., description="http(s) URL or a local path (relative to the sources file).")

    @property
    def location(self) -> str:
        return self.url

    @property
    def rate_limit(self) -> None:
        """Only API sources take `rate_limit`."""
        return None

    @model_validator(mode="after")
    def _feed_defaults(self) -> RssSource:
        # A feed has a fixed shape; its entry id is the natural key.
        if self.columns is None:
            object.__setattr__(self, "columns", dict(FEED_COLUMNS))
        if self.primary_key is None:
            object.__setattr__(self, "primary_key", ["id"])
        self._check_references()  # against the feed's columns, now that they are set
        return self


SourceSpec = Annotated[CsvSource | ApiSource | RssSource, Field(discriminator="kind")]


Spec = CsvSource | ApiSource | RssSource
