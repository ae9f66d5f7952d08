"""Reading a sources file: YAML that refuses a key given twice, ${VAR} expansion (values registered as secrets),
each source validated on its own, and one error line per problem (strict) or per source (lenient)."""

from __future__ import annotations

import os
import re
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Literal, overload

import yaml
from pydantic import TypeAdapter, ValidationError

from . import redaction
from .config import NAME_RE, RESERVED_NAMES, ConfigError, SourceSpec, Spec, split_glob

DEFAULT_SOURCES = "sources.yaml"
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SPEC: TypeAdapter[Spec] = TypeAdapter(SourceSpec)  # one source at a time: a bad one never hides the others


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first: int, line: int):
        self.line = line
        super().__init__(
            f"key {key!r} is given twice in one mapping (first at line {first}); YAML would keep "
            "only the last, silently; fix: remove or rename one"
        )


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
        raise ConfigError(
            f"source '{source}': {key} uses ${{{var}}} but {var} is not set; export it or "
            f"write ${{{var}:-default}}"
        )

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


def _format_error(
    path: str, name: str, err: ValidationError, skip: AbstractSet[str] = frozenset()
) -> list[str]:
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
        raise ConfigError(
            f"{path}: cannot read the sources file: {exc}; fix: save it as UTF-8 text"
        ) from None
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
                entries.append(
                    (shown, _Unreadable(f"{path}:{line}: source {shown!r}: {_one_line(str(exc))}"))
                )
                continue
            if shown in first_line:
                why = _Unreadable(
                    f"{path}:{line}: source '{shown}' is defined twice (first at line "
                    f"{first_line[shown]}); YAML would keep only the last, silently; fix: rename or "
                    "remove one"
                )
                entries = [(n, why if n == shown else s) for n, s in entries]
                continue
            first_line[shown] = line
            try:
                entries.append((shown, loader.construct_document(value_node)))
            except DuplicateKeyError as exc:
                entries.append((shown, _Unreadable(f"{path}:{exc.line}: source '{shown}': {exc}")))
            except yaml.YAMLError as exc:
                entries.append(
                    (shown, _Unreadable(f"{path}:{line}: source '{shown}': {_one_line(str(exc))}"))
                )
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
        return [
            f"{path}: source '{name}': the name is reserved (a Python keyword, a name Dagster refuses for an "
            "asset, or `all`, whose job ingest_all runs every source); fix: rename the source"
        ]
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
def load_sources(
    path: str | os.PathLike[str] | None = None, *, lenient: Literal[False] = False, header_env: bool = False
) -> dict[str, Spec]: ...


@overload
def load_sources(
    path: str | os.PathLike[str] | None = None, *, lenient: Literal[True], header_env: bool = False
) -> tuple[dict[str, Spec], dict[str, list[str]]]: ...


def load_sources(
    path: str | os.PathLike[str] | None = None, *, lenient: bool = False, header_env: bool = False
) -> dict[str, Spec] | tuple[dict[str, Spec], dict[str, list[str]]]:
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
