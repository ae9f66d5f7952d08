"""Source specs: the `sources.yaml` reference and its validation are one thing.

Every key a user may write is a field below, with its default and its meaning; the README's reference table
is written from these models. A bad file is refused before anything runs, with the source name, the key
path and what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import redaction

COLUMN_TYPES = ("string", "integer", "float", "boolean", "timestamp", "date", "json")
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date", "json"]

DEFAULT_SOURCES = "sources.yaml"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

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


class ConfigError(ValueError):
    """A sources file that cannot be used; the message names the file, source and key (secrets masked)."""

    def __init__(self, message: str):
        super().__init__(redaction.redact(message))


class _Strict(BaseModel):
    # Unknown keys are refused: a typo like `primary_keys` must not silently do nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Strict):
    max_retries: int = Field(3, ge=0, le=50, description="Step retries (Dagster RetryPolicy) and HTTP retries.")
    delay_seconds: float = Field(1.0, ge=0, description="First backoff delay; doubles each attempt, with jitter.")
    max_delay_seconds: float = Field(60.0, gt=0, description="Cap of one HTTP backoff delay.")


class DriftSpec(_Strict):
    auto_map_threshold: float = Field(0.85, ge=0, le=1, description="Apply a rename at or above this confidence.")
    suggest_threshold: float = Field(0.6, ge=0, le=1, description="Record a suggestion (not applied) at or above.")
    on_missing_required: Literal["fail", "quarantine"] = "fail"
    on_new_column: Literal["evolve", "ignore", "fail"] = "evolve"
    required: list[str] | None = Field(None, description="Required columns; default: every declared column.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftSpec:
        if self.suggest_threshold > self.auto_map_threshold:
            raise ValueError("suggest_threshold must not be above auto_map_threshold")
        return self


class RateLimitSpec(_Strict):
    calls: int = Field(..., gt=0)
    period_seconds: float = Field(..., gt=0)


class IncrementalSpec(_Strict):
    param: str = Field(..., description="Query parameter that receives the high-watermark.")
    field: str = Field(..., description="Record field whose maximum becomes the next high-watermark.")


class PagePagination(_Strict):
    type: Literal["page"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    size: int | None = Field(100, gt=0)
    start: int = 1


class OffsetPagination(_Strict):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, gt=0)


class CursorPagination(_Strict):
    type: Literal["cursor"]
    cursor_param: str = "cursor"
    cursor_path: str = Field(..., description="Dot path to the next cursor in the body; `$last.<field>` reads it "
                                               "from the last record (Stripe's starting_after).")
    has_more_path: str | None = Field(None, description="Dot path to a boolean that says another page exists.")


class LinkHeaderPagination(_Strict):
    type: Literal["link_header"]


class NextUrlPagination(_Strict):
    type: Literal["next_url"]
    next_path: str = "next"


class NoPagination(_Strict):
    type: Literal["none"]


Pagination = Annotated[
    PagePagination | OffsetPagination | CursorPagination | LinkHeaderPagination | NextUrlPagination | NoPagination,
    Field(discriminator="type"),
]


class _SourceBase(_Strict):
    name: str = Field("", description="The mapping key; also the asset key.")
    table: str | None = Field(None, description="Warehouse table; default: the source name.")
    description: str | None = None
    primary_key: list[str] | None = None
    columns: dict[str, ColumnType] | None = None
    retry: RetrySpec = RetrySpec()
    schedule: str | None = Field(None, description="Cron expression; a schedule runs ingest_<source>.")
    drift: DriftSpec = DriftSpec()
    column_map: dict[str, str] = Field(default_factory=dict, description="Observed column -> expected column.")

    @field_validator("primary_key", mode="before")
    @classmethod
    def _pk_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError(f"expected a 5-field cron expression like '0 * * * *', got {v!r}")
        return v

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @model_validator(mode="after")
    def _pk_in_columns(self) -> _SourceBase:
        if self.columns and self.primary_key:
            missing = [k for k in self.primary_key if k not in self.columns]
            if missing:
                raise ValueError(f"primary_key {missing} not among columns {list(self.columns)}")
        return self


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
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="Default: detected.")
    encoding: str | None = Field(None, description="Default: detected (UTF-8, UTF-8 BOM, UTF-16, latin-1).")
    chunk_rows: int = Field(40_000, gt=0, description="Rows per batch (one transaction each).")
    follow_symlinks: bool = Field(False, description="Follow symbolic links in the drop folder, only to targets "
                                                     "inside it; default: a link is skipped with a warning.")

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

    timeout_seconds: float = Field(30.0, gt=0, description="Budget of one request attempt, connect to last byte.")
    max_response_bytes: int = Field(MAX_RESPONSE_BYTES, gt=0,
                                    description="Largest answer accepted, counted after decompression.")
    allowed_hosts: list[str] = Field(default_factory=list,
                                     description="Other hosts that pagination links and redirects may lead to "
                                                 "(host, host:port, *.domain, scheme://host:port); the "
                                                 "source's headers go to them too.")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        from .http import parse_allowed_host  # http imports this module

        for entry in v:
            parse_allowed_host(entry)
        return v


class ApiSource(_HttpSource):
    kind: Literal["api"]
    url: str
    records_path: str = Field("", description="Dot path to the list of records; empty: the body is the list.")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                       description="Query parameters; values may use ${ENV_VAR}.")
    headers: dict[str, str] = Field(default_factory=dict, description="Values may use ${ENV_VAR}; secret: never "
                                                                      "logged, sent to no other host.")
    pagination: Pagination = NoPagination(type="none")
    max_pages: int = Field(10_000, gt=0, description="Pages one run follows; beyond, the run lands what it read "
                                                     "and fails (a rerun resumes).")
    rate_limit: RateLimitSpec | None = None
    incremental: IncrementalSpec | None = None
    batch_rows: int = Field(1000, gt=0, description="Pages land together (one transaction) until this many rows.")
    batch_seconds: float = Field(5.0, gt=0, description="... or until pages have been read this long.")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not re.match(r"^https?://", v):
            raise ValueError(f"expected an http(s):// URL, got {v!r}")
        return v


class RssSource(_HttpSource):
    kind: Literal["rss"]
    url: str = Field(..., description="http(s) URL or a local path (relative to the sources file).")

    @model_validator(mode="after")
    def _feed_defaults(self) -> RssSource:
        # A feed has a fixed shape; its entry id is the natural key.
        if self.columns is None:
            object.__setattr__(self, "columns", dict(FEED_COLUMNS))
        if self.primary_key is None:
            object.__setattr__(self, "primary_key", ["id"])
        return self


SourceSpec = Annotated[CsvSource | ApiSource | RssSource, Field(discriminator="kind")]


class _File(BaseModel):
    sources: dict[str, SourceSpec]


def expand_env(value: str, *, source: str, key: str) -> str:
    """Replace ${VAR} / ${VAR:-default}; a missing variable is an error naming the source and key. Every value
    taken from the environment is registered as a secret (a plain base URL in `url` excepted)."""

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            redaction.register_variable(var, os.environ[var], address_ok=key == "url" and m.start() == 0)
            return os.environ[var]
        if default is not None:
            return default
        raise ConfigError(f"source '{source}': {key} uses ${{{var}}} but {var} is not set; export it or "
                          f"write ${{{var}:-default}}")

    return ENV_RE.sub(sub, value)


def _expand(spec: dict[str, Any], name: str) -> None:
    """Expand ${VAR} in `url` (a base URL may come from the environment: ${API_BASE:-https://api.example.com})
    and in `params`; register the header values as secrets (they are expanded per run: see extract/api.py)."""
    if isinstance(spec.get("url"), str):
        spec["url"] = expand_env(spec["url"], source=name, key="url")
    if isinstance(spec.get("params"), dict):
        spec["params"] = {k: expand_env(v, source=name, key=f"params.{k}") if isinstance(v, str) else v
                          for k, v in spec["params"].items()}
    if isinstance(spec.get("headers"), dict):
        for k, v in spec["headers"].items():
            if isinstance(v, str):
                try:
                    redaction.register_header(str(k), expand_env(v, source=name, key=f"headers.{k}"))
                except ConfigError:
                    pass  # an unset variable fails that source's run, with its own line
    if isinstance(spec.get("url"), str):
        redaction.register_userinfo(spec["url"])


def _resolve_path(value: str, base: Path) -> str:
    if re.match(r"^https?://", value):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def _format_error(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # loc is ('sources', name, <kind tag>, key, ..., 'pagination', <type tag>, key): drop the union tags.
        loc = [str(x) for x in e["loc"]][1:]
        name, rest = (loc[0] if loc else "?"), loc[1:]
        if rest[:1] and rest[0] in ("csv", "api", "rss"):
            rest = rest[1:]
        if rest[:1] == ["pagination"] and len(rest) > 2:
            rest = [rest[0], *rest[2:]]
        keypath = ".".join(rest) or "(spec)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the README's sources.yaml reference)"
        if e["type"] == "value_error":  # our own validators already quote the value
            msg = msg.removeprefix("Value error, ")
        got = e.get("input")
        shown = e["type"] not in ("missing", "extra_forbidden", "value_error") and not isinstance(got, dict)
        lines.append(f"{path}: source '{name}': key '{keypath}': {msg}" + (f" (got {got!r})" if shown else ""))
    return "\n".join(lines)


def load_sources(path: str | os.PathLike[str] | None = None) -> dict[str, CsvSource | ApiSource | RssSource]:
    """Load and validate a sources file; raise ConfigError with every problem, one line each."""
    path = Path(path or os.environ.get("ETL_SOURCES") or DEFAULT_SOURCES)
    if not path.is_file():
        raise ConfigError(f"{path}: sources file not found; set ETL_SOURCES or create it (see README)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of source name -> spec, got {type(raw).__name__}")
    problems = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(f"{path}: source {name!r}: the name must be snake_case (it is the asset key)")
        elif not isinstance(spec, dict):
            problems.append(f"{path}: source '{name}': expected a mapping of keys, got {type(spec).__name__}")
        elif "kind" not in spec:
            problems.append(f"{path}: source '{name}': key 'kind': required, one of 'csv', 'api', 'rss'")
    if problems:
        raise ConfigError("\n".join(problems))
    base = path.resolve().parent
    prepared = {}
    for name, spec in raw.items():
        spec = dict(spec, name=name)
        try:
            _expand(spec, name)
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
        if spec.get("kind") == "csv" and isinstance(spec.get("path"), str):
            # The walk's root is fixed to its real path now: a link swapped in for it later cannot redirect it.
            root, rest = split_glob(_resolve_path(spec["path"], base))
            spec["path"] = os.path.join(os.path.realpath(root), rest) if rest else os.path.realpath(root)
        if spec.get("kind") == "rss" and isinstance(spec.get("url"), str):
            spec["url"] = _resolve_path(spec["url"], base)
        prepared[name] = spec
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        return dict(_File(sources=prepared).sources)
    except ValidationError as exc:
        raise ConfigError(_format_error(str(path), exc)) from None
