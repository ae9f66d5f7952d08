"""Source specs: the `sources.yaml` reference and its validation are one thing.

Every key a user may write is a field below, with its default and its meaning; the README's reference table
is written from these models. A bad file is refused before anything runs, with the source name, the key
path and what was expected.
"""

from __future__ import annotations

import codecs
import keyword
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, overload

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

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

# PostgreSQL's NAMEDATALEN - 1: a longer table name fails at CREATE TABLE, a longer column name is cut short.
MAX_IDENTIFIER_BYTES = 63
# Names Dagster refuses for an asset (dagster._core.definitions.utils.DISALLOWED_NAMES, Python keywords among
# them), and `all`, whose job ingest_all is the every-source job. test_validate.py checks the list against Dagster's.
RESERVED_NAMES = frozenset({
    "context", "conf", "config", "meta", "arg_dict", "dict", "input_arg_dict", "output_arg_dict", "int", "str",
    "float", "bool", "input", "output", "type", "all", *keyword.kwlist})


class _CronError(ValueError):
    pass


# (field, lowest, highest, names in order from `lowest`); the ranges are cron's, as Dagster's croniter reads them.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _cron_value(token: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = low + names.index(token)
    else:
        spelled = f" or {names[0]}-{names[-1]}" if names else ""
        raise _CronError(f"{field} {token!r} is not a number {low}-{high}{spelled}")
    if not low <= value <= high:
        raise _CronError(f"{field} {value} is out of range {low}-{high}")
    return value


def _cron_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    """The values one field selects (`?` and `*` alike); `L` (last day) counts as the 28th, `mon#2` as monday."""
    out: set[int] = set()
    for item in text.split(","):
        if item == "?" and field in ("day of month", "day of week"):
            item = "*"
        if item == "l" and field == "day of month":
            out.add(28)
            continue
        nth = re.match(r"^([0-9a-z]+)#([0-9]+)$", item) if field == "day of week" else None
        if nth:
            if not 1 <= int(nth.group(2)) <= 5:
                raise _CronError(f"{item!r}: the week of the month after '#' must be 1-5")
            out.add(_cron_value(nth.group(1), field, low, high, names))
            continue
        m = _CRON_ITEM.match(item)
        if not m:
            raise _CronError(f"{field} {item!r} is not a value, a range a-b, '*' or a step like */15")
        star, a, b, step = m.groups()
        first = low if star else _cron_value(a, field, low, high, names)
        last = high if star or (step and not b) else _cron_value(b or a, field, low, high, names)
        if step is not None and int(step) == 0:
            raise _CronError(f"{field} {item!r}: a step must be 1 or more")
        span = range(first, last + 1) if first <= last else [*range(first, high + 1), *range(low, last + 1)]
        out.update(list(span)[::int(step or 1)])
    return out


def cron_problem(expr: str) -> str | None:
    """Why Dagster would refuse this schedule, or why it would never fire (Dagster accepts `0 0 31 4 *`, then
    its ticks fail); None when it is fine. By hand because Dagster's validator (its vendored croniter) cannot be
    imported without dagster; test_validate.py checks that the two agree."""
    fields = expr.lower().split()
    if len(fields) != 5:
        return (f"expected a 5-field cron expression (minute hour day-of-month month day-of-week) like "
                f"'0 * * * *', got {expr!r}")
    problems, sets = [], []
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        try:
            sets.append(_cron_field(text, field, low, high, names))
        except _CronError as exc:
            problems.append(str(exc))
    if problems:
        return f"{'; '.join(problems)} in {expr!r}"
    days, months = sets[2], sets[3]
    # With a day of week too, cron fires on either; with only days of the month, one must exist in a month.
    if fields[4] in ("*", "?") and min(days) > max(_MONTH_DAYS[m - 1] for m in months):
        return f"{expr!r} never fires: no month it names has day {min(days)}"
    return None


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
    on_swap: Literal["fail", "warn"] = Field("fail", description="Headers whose values look swapped: stop, or "
                                                                 "load as the header says with a WARN.")
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
    date_format: str | dict[str, str] | None = Field(
        None, description="strftime format that reads every value of the date and timestamp columns, or a mapping "
                          "column -> format; default: ISO 8601, then the column's one day/month order.")
    dayfirst: bool | None = Field(
        None, description="Numeric day/month dates (01/02/2026) are day-first (true) or month-first (false); "
                          "default: decided from each column's values.")

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
            raise ValueError(f"column name(s) {long} longer than {MAX_IDENTIFIER_BYTES} bytes in UTF-8 "
                             "(PostgreSQL would cut them short); declare shorter names and map the observed "
                             "ones with column_map")
        return v

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @model_validator(mode="after")
    def _pk_in_columns(self) -> _SourceBase:
        self._check_references()
        size = len(self.table_name.encode())
        if size > MAX_IDENTIFIER_BYTES:
            whose = "table" if self.table else "the source name, used as the table name,"
            raise ValueError(f"{whose} {self.table_name!r} is {size} bytes in UTF-8, over PostgreSQL's limit of "
                             f"{MAX_IDENTIFIER_BYTES} (NAMEDATALEN); fix: set `table:` to a shorter name")
        return self

    def _check_references(self) -> None:
        """Every column the spec names must be declared, when `columns` is: a typo would never match."""
        if not self.columns:
            return
        named = {"primary_key": self.primary_key or [], "drift.required": self.drift.required or [],
                 "column_map values": list(self.column_map.values())}
        problems = [f"{key} {missing} not among columns {list(self.columns)}" for key, names in named.items()
                    if (missing := [c for c in names if c not in self.columns])]
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
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="Default: detected.")
    encoding: str | None = Field(None, description="Default: detected (UTF-8, UTF-8 BOM, UTF-16, latin-1).")
    chunk_rows: int = Field(40_000, gt=0, description="Rows per batch (one transaction each).")
    follow_symlinks: bool = Field(False, description="Follow symbolic links in the drop folder, only to targets "
                                                     "inside it; default: a link is skipped with a warning.")

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
            raise ValueError(f"unknown text encoding {v!r}; fix: a Python codec name such as utf-8, utf-8-sig, "
                             "latin-1, cp1252, utf-16, or leave it out to detect it") from None
        return v

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
        self._check_references()  # against the feed's columns, now that they are set
        return self


SourceSpec = Annotated[CsvSource | ApiSource | RssSource, Field(discriminator="kind")]


Spec = CsvSource | ApiSource | RssSource
_SPEC: TypeAdapter[Spec] = TypeAdapter(SourceSpec)  # one source at a time: a bad one never hides the others


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first: int, line: int):
        self.line = line
        super().__init__(f"key {key!r} is given twice in one mapping (first at line {first}); YAML would keep "
                         "only the last, silently; fix: remove or rename one")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; this loader refuses a mapping that repeats one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden key by key: that is what it is for
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, seen[key], line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
        return super().construct_mapping(node, deep=deep)


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


def _expand(spec: dict[str, Any], name: str, *, headers_now: bool) -> dict[str, str]:
    """Expand ${VAR} in `url` (a base URL may come from the environment: ${API_BASE:-https://api.example.com})
    and in `params`; register the header values as secrets (they are expanded per run: see extract/api.py).
    Returns key -> problem for each unset variable; one in a header counts only when `headers_now`."""
    problems: dict[str, str] = {}

    def expanded(value: Any, key: str) -> Any:
        try:
            return expand_env(value, source=name, key=key) if isinstance(value, str) else value
        except ConfigError as exc:
            problems[key] = str(exc)
            return value

    if "url" in spec:
        spec["url"] = expanded(spec["url"], "url")
    if isinstance(spec.get("params"), dict):
        spec["params"] = {k: expanded(v, f"params.{k}") for k, v in spec["params"].items()}
    if isinstance(spec.get("headers"), dict):
        for k, v in spec["headers"].items():
            if not isinstance(v, str):
                continue
            value = expanded(v, f"headers.{k}")
            if f"headers.{k}" not in problems:
                redaction.register_header(str(k), value)
            elif not headers_now:  # it may be set where the run executes; if not, the run fails with one line
                del problems[f"headers.{k}"]
    if isinstance(spec.get("url"), str) and "url" not in problems:
        redaction.register_userinfo(spec["url"])
    return problems


def _resolve_path(value: str, base: Path) -> str:
    if re.match(r"^https?://", value):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def _format_error(path: str, name: str, err: ValidationError, skip: set[str] = frozenset()) -> list[str]:
    """One line per problem of one source; `skip`: keys whose problem is already told (an unset ${VAR})."""
    lines = []
    for e in err.errors():
        # loc is (<kind tag>, key, ..., 'pagination', <type tag>, key): drop the union tags.
        rest = [str(x) for x in e["loc"]]
        if rest[:1] and rest[0] in ("csv", "api", "rss"):
            rest = rest[1:]
        if rest[:1] == ["pagination"] and len(rest) > 2:
            rest = [rest[0], *rest[2:]]
        keypath = ".".join(rest) or ("kind" if e["type"] == "union_tag_invalid" else "")
        if any(keypath == k or keypath.startswith(f"{k}.") or k.startswith(f"{keypath}.") for k in skip):
            continue
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the README's sources.yaml reference)"
        if e["type"] == "value_error":  # our own validators already quote the value
            msg = msg.removeprefix("Value error, ")
        got = e.get("input")
        shown = e["type"] not in ("missing", "extra_forbidden", "value_error") and not isinstance(got, dict)
        where = f"key '{keypath}': " if keypath else ""  # a check across keys says which in its message
        lines.append(f"{path}: source '{name}': {where}{msg}" + (f" (got {got!r})" if shown else ""))
    return lines


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Unreadable(str):
    """The problem line of an entry `_entries` could not read (a key given twice, a bad tag)."""


def _entries(path: Path) -> list[tuple[str, Any]]:
    """(name as shown, spec) per top-level entry, in file order; the spec is `_Unreadable` when that entry cannot
    be read. A file that cannot be read or is not a YAML mapping raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the sources file: {exc}; fix: save it as UTF-8 text") from None
    loader = UniqueKeyLoader(text)
    loader.name = str(path)  # YAML's marks then name the file, not "<unicode string>"
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode) or not root.value:
            got = "nothing" if root is None else type(loader.construct_document(root)).__name__
            raise ConfigError(f"{path}: expected a mapping of source name -> spec, got {got}")
        entries: list[tuple[str, Any]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            try:
                name = loader.construct_document(key_node)
                shown = name if isinstance(name, str) else repr(name)
            except yaml.YAMLError as exc:
                shown = str(getattr(key_node, "value", "?"))
                entries.append((shown, _Unreadable(f"{path}:{line}: source {shown!r}: {_one_line(str(exc))}")))
                continue
            if shown in first_line:
                why = _Unreadable(f"{path}:{line}: source '{shown}' is defined twice (first at line "
                                  f"{first_line[shown]}); YAML would keep only the last, silently; fix: rename or "
                                  "remove one")
                entries = [(n, why if n == shown else s) for n, s in entries]
                continue
            first_line[shown] = line
            try:
                entries.append((shown, loader.construct_document(value_node)))
            except DuplicateKeyError as exc:
                entries.append((shown, _Unreadable(f"{path}:{exc.line}: source '{shown}': {exc}")))
            except yaml.YAMLError as exc:
                entries.append((shown, _Unreadable(f"{path}:{line}: source '{shown}': {_one_line(str(exc))}")))
        return entries
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(exc))}") from None
    finally:
        loader.dispose()


def _source(path: Path, name: str, spec: Any, *, headers_now: bool) -> Spec | list[str]:
    """One source's spec, or its problems (one line each)."""
    if isinstance(spec, _Unreadable):
        return [str(spec)]
    if not NAME_RE.match(name):
        return [f"{path}: source {name!r}: the name must be snake_case (it is the asset key)"]
    if name in RESERVED_NAMES:
        return [f"{path}: source '{name}': the name is reserved (a Python keyword, a name Dagster refuses for an "
                "asset, or `all`, whose job ingest_all runs every source); fix: rename the source"]
    if not isinstance(spec, dict):
        return [f"{path}: source '{name}': expected a mapping of keys, got {type(spec).__name__}"]
    if "kind" not in spec:
        return [f"{path}: source '{name}': key 'kind': required, one of 'csv', 'api', 'rss'"]
    spec = dict(spec, name=name)
    unset = _expand(spec, name, headers_now=headers_now)
    base = path.resolve().parent
    if spec.get("kind") == "csv" and isinstance(spec.get("path"), str):
        # The walk's root is fixed to its real path now: a link swapped in for it later cannot redirect it.
        root, rest = split_glob(_resolve_path(spec["path"], base))
        spec["path"] = os.path.join(os.path.realpath(root), rest) if rest else os.path.realpath(root)
    if spec.get("kind") == "rss" and isinstance(spec.get("url"), str):
        spec["url"] = _resolve_path(spec["url"], base)
    problems = [f"{path}: {line}" for line in unset.values()]
    try:
        model = _SPEC.validate_python(spec)
    except ValidationError as exc:
        return problems + _format_error(str(path), name, exc, skip=set(unset))
    return problems or model


@overload
def load_sources(path: str | os.PathLike[str] | None = None, *, lenient: Literal[False] = False,
                 header_env: bool = False) -> dict[str, Spec]:
    ...


@overload
def load_sources(path: str | os.PathLike[str] | None = None, *, lenient: Literal[True],
                 header_env: bool = False) -> tuple[dict[str, Spec], dict[str, list[str]]]:
    ...


def load_sources(path: str | os.PathLike[str] | None = None, *, lenient: bool = False,
                 header_env: bool = False) -> dict[str, Spec] | tuple[dict[str, Spec], dict[str, list[str]]]:
    """Load and validate a sources file.

    Strict (the CLI): raise ConfigError with every problem of every source, one line each. Lenient (the Dagster
    layer: one bad source must not take the others down): return the valid specs and, for each invalid source,
    its problem lines. A missing file or a file that is not a YAML mapping raises ConfigError in both modes:
    there is nothing to load. Headers are expanded per run, in the process that runs it, so a header's unset
    `${VAR}` is a problem only with `header_env` (`validate`: will the runs of this environment work?).
    """
    path = Path(path or os.environ.get("ETL_SOURCES") or DEFAULT_SOURCES)
    if not path.is_file():
        raise ConfigError(f"{path}: sources file not found; set ETL_SOURCES or create it (see README)")
    specs: dict[str, Spec] = {}
    problems: dict[str, list[str]] = {}
    for name, spec in _entries(path):  # a name defined twice is one entry
        result = _source(path, name, spec, headers_now=header_env)
        if isinstance(result, list):
            problems[name] = result
        else:
            specs[name] = result
    if lenient:
        return specs, problems
    if problems:
        raise ConfigError("\n".join(line for lines in problems.values() for line in lines))
    return specs
