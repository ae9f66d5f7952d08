"""Paginated HTTP JSON APIs: one page is one batch; the checkpoint holds the next request and the watermark."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import requests

from .. import redaction
from ..config import ApiSource
from ..config_load import ENV_RE, expand_env
from ..errors import SourceError
from ..http import SourceHttp
from ..logs import event_fields
from ..origin import OriginPolicy
from ..ratelimit import RateLimiter
from ..redaction import quote_body, redact
from .base import ApiPosition, Batch, ExtractorStats, content_id, http_stats
from .pagination import dig, fingerprint, make_paginator

log = logging.getLogger(__name__)


# What marks a JSON object as an answer about a failed call rather than data (key names compared lowercased,
# without `_` and `-`): Google's and Slack's `error`, GraphQL's and JSON:API's `errors`, Apigee's `fault`,
# `{"ok": false}`, JSend's `{"status": "error", "message": ...}`, RFC 7807's `{"title", "status": 403, "detail"}`.
_ERROR_KEYS = frozenset(
    {"error", "errors", "fault", "errormessage", "errormsg", "errordescription", "exception"}
)
_FLAG_KEYS = frozenset({"ok", "success", "succeeded"})
_STATUS_KEYS = frozenset({"status", "stat", "code", "statuscode", "httpstatus", "httpcode", "errorcode"})
_MESSAGE_KEYS = frozenset({"message", "msg", "detail", "details", "description", "reason", "title"})
_CALL_KEYS = (
    _STATUS_KEYS
    | _MESSAGE_KEYS
    | {
        "type",
        "documentationurl",
        "requestid",
        "traceid",
        "timestamp",
        "path",
        "instance",
        "help",
        "hint",
        "moreinfo",
        "statustext",
        "statusmessage",
    }
)
_FAILED_WORDS = frozenset({"error", "fail", "failed", "failure"})


def _norm(key: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


def _failed_status(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return 400 <= v < 600
    s = str(v).strip().lower() if isinstance(v, str) else ""
    return s in _FAILED_WORDS or (s.isdigit() and 400 <= int(s) < 600)


def _error_keys(obj: Any, ignore: Any = (), envelope: bool = False) -> list[str] | None:
    """The keys that make `obj` an error answer (None: it does not look like one). `envelope`: `obj` wraps the
    records (key `ignore`), so only explicit failure marks count, not "it holds nothing but a message"."""
    if not isinstance(obj, dict):
        return None
    keys = {k: _norm(k) for k in obj if k not in ignore}
    hits = [k for k, n in keys.items() if n in _ERROR_KEYS and obj[k] not in (None, False, "", [], {}, 0)]
    hits += [k for k, n in keys.items() if n in _FLAG_KEYS and obj[k] is False]
    if all(
        n in _CALL_KEYS | {"data", "result"} for n in keys.values()
    ):  # JSend puts a failure's fields in `data`
        hits += [k for k, n in keys.items() if n in _STATUS_KEYS and _failed_status(obj[k])]
    if (
        not envelope
        and keys
        and all(n in _CALL_KEYS for n in keys.values())
        and any(n in _MESSAGE_KEYS for n in keys.values())
    ):
        hits += list(keys)  # `{"message": ..., "status": ...}`: a word about the request, not a record
    return list(dict.fromkeys(hits)) or None


def _error_along(body: Any, path: str) -> tuple[Any, list[str] | None]:
    """An error answer where `records_path` is missing: the body, or an object on the way to the path."""
    parts = [p for p in path.split(".") if p]
    for i in range(len(parts)):
        node = dig(body, ".".join(parts[:i]), None)
        if (keys := _error_keys(node)) is not None:
            return node, keys
    return None, None


def _flatten(record: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            _flatten(v, name + "__", out)
        else:
            out[name] = v


def records_frame(rows: list[dict[str, Any]], source: str, url: str) -> pd.DataFrame:
    """Records as a frame, nested objects flattened with `__` (`address__geo__lat`), values as parsed: object
    columns, so an integer next to a missing value stays an exact int (pandas' own inference makes it float64)."""
    flat: list[dict[str, Any]] = []
    try:
        for r in rows:
            out: dict[str, Any] = {}
            _flatten(r, "", out)
            flat.append(out)
    except RecursionError:
        raise SourceError(
            source,
            f"GET {url}",
            "records nested too deeply to flatten",
            "point records_path at a shallower list",
        ) from None
    return pd.DataFrame(flat, dtype=object) if flat else pd.DataFrame()


def _newer(a: Any, b: Any) -> bool:
    try:
        return b is None or a > b
    except TypeError:  # mixed types: compare as text rather than fail the run
        return str(a) > str(b)


class ApiExtractor:
    def __init__(self, spec: ApiSource, limiter: RateLimiter | None = None):
        self.spec = spec
        self.http = SourceHttp(
            spec.name,
            spec.retry,
            spec.timeout_seconds,
            limiter,
            policy=OriginPolicy(spec.url, spec.allowed_hosts),
            max_bytes=spec.max_response_bytes,
        )
        self.paginator = make_paginator(spec.pagination)

    def stats(self) -> ExtractorStats:
        return http_stats(self.http)

    def _headers(self) -> dict[str, str]:
        """Expanded per run; every value is a secret (registered for redaction, never logged)."""
        headers = {}
        for k, v in self.spec.headers.items():
            unset = [
                m.group(1) for m in ENV_RE.finditer(v) if m.group(1) not in os.environ and m.group(2) is None
            ]
            if unset:
                raise SourceError(
                    self.spec.name,
                    f"headers.{k}",
                    f"uses ${{{unset[0]}}} but {unset[0]} is not set",
                    f"export {unset[0]} or write ${{{unset[0]}:-default}}",
                )
            headers[k] = expand_env(v, source=self.spec.name, key=f"headers.{k}")
            redaction.register_header(k, headers[k])
        return headers

    def _records(self, resp: requests.Response) -> tuple[Any, list]:
        content = resp.content
        try:
            body = json.loads(content)
        except (ValueError, RecursionError) as exc:
            why = (
                "nested too deeply"
                if isinstance(exc, RecursionError)
                else f"Content-Type {resp.headers.get('Content-Type', '?')}"
            )
            raise SourceError(
                self.spec.name,
                f"GET {resp.url}",
                f"body is not JSON ({why}): {quote_body(content, 80)!r}",
                "check the URL points at the JSON API",
                retryable=True,
            ) from None
        records = self._shaped(resp, body)
        if redaction.holds_secret(content):  # a server that echoes a token must not put it into a table
            masked = redaction.mask_obj(records)
            if masked != records:
                records = masked
                log.warning(
                    "source %s: records of GET %s held a configured secret; it lands as ***",
                    self.spec.name,
                    redact(resp.url),
                    extra=event_fields("secret_in_answer", url=resp.url),
                )
        return body, records

    def _shaped(self, resp: requests.Response, body: Any) -> list:
        """The page's records, or a SourceError when the body has not the configured shape (README "Bad input"):
        an error answer, no `records_path`, an object where the default `records_path: ""` expects a list."""
        path = self.spec.records_path
        place = f"GET {resp.url}"
        try:
            records = dig(body, path)
        except KeyError:
            self._refuse_error(place, resp, *reversed(_error_along(body, path)))
            keys = list(body)[:10] if isinstance(body, dict) else type(body).__name__
            raise SourceError(
                self.spec.name,
                place,
                f"records_path '{path}' not found in the body (top level: {keys})",
                "set records_path to the dot path of the list of records",
            ) from None
        # an envelope that holds records and says the call failed (GraphQL `errors`, `"status": "error"`)
        if isinstance(body, dict) and records is not body:
            self._refuse_error(
                place, resp, _error_keys(body, ignore=path.split(".")[:1], envelope=True), body
            )
        if records is None:
            return []
        if isinstance(records, dict):
            self._refuse_error(place, resp, _error_keys(records), records)
            if not path:  # the default promises a list; only a path that names an object makes it one record
                inner = [
                    k
                    for k, v in records.items()
                    if isinstance(v, list) and any(isinstance(x, dict) for x in v)
                ]
                hint = f"; its key '{inner[0]}' holds a list of objects" if inner else ""
                raise SourceError(
                    self.spec.name,
                    place,
                    f"the body is an object, not a list of records{hint}",
                    (
                        f"set records_path: {inner[0]}"
                        if inner
                        else "set records_path to the key of the list of records"
                    )
                    + "; if the object itself is one record, set records_path: "
                    "'.'",
                )
            return [records] if records else []
        if not isinstance(records, list):
            raise SourceError(
                self.spec.name,
                place,
                f"records_path '{path}' is a {type(records).__name__}, not a list",
                "point records_path at the list of records",
            )
        return records

    def _refuse_error(self, place: str, resp: requests.Response, keys: list[str] | None, obj: Any) -> None:
        """An answer that says the call failed lands nothing (the checkpoint stays before this page). The line
        quotes what the answer says about the failure (its error, status and message keys), no record."""
        if not keys:
            return
        shown = {k: v for k, v in obj.items() if k in keys or _norm(k) in _STATUS_KEYS | _MESSAGE_KEYS}
        raise SourceError(
            self.spec.name,
            place,
            f"HTTP {resp.status_code} but the body is an error, not records: "
            f"{quote_body(json.dumps(shown, ensure_ascii=False, default=str))}",
            "check the credentials, quota and parameters the API complains of; nothing of this page "
            "landed and a rerun resumes at it",
        )

    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        spec, state = self.spec, redaction.reveal(dict(checkpoint or {}))
        watermark = state.get("watermark")
        request = state.get("next")
        pending = state.get("pending_watermark", watermark)
        if request is None:  # a new pass; an interrupted one resumes at its stored request
            params = dict(spec.params)
            if spec.incremental and watermark is not None:
                params[spec.incremental.param] = watermark
            request = self.paginator.first(spec.url, params)
            pending = watermark
        headers = self._headers()
        page, group, started = 0, [], time.monotonic()
        made = {fingerprint(request)}
        while request is not None:
            resp = self.http.get(request["url"], request["params"], headers)
            body, records = self._records(resp)
            page += 1
            try:
                nxt = self.paginator.next(request, resp, body, records)
            except ValueError as exc:  # a next link or cursor the server botched (`http://[::1/x`)
                raise SourceError(
                    spec.name,
                    f"GET {resp.url} (page {page})",
                    f"the next page is not a valid request: {quote_body(str(exc), 200)}",
                    "the server is broken; tell its owner (the pages before this one have landed)",
                ) from None
            looped = nxt is not None and fingerprint(nxt) in made
            # A next page off the origin is refused, but the pages read so far land first (checkpoint at it).
            refused = nxt is not None and self.http.refused(nxt["url"])
            if nxt is not None:
                made.add(fingerprint(nxt))
            at_limit = nxt is not None and page >= spec.max_pages
            if spec.incremental:
                for r in records:
                    v = r.get(spec.incremental.field) if isinstance(r, dict) else None
                    if v is not None and _newer(v, pending):
                        pending = v
            location = redact(resp.url)
            log.info("source %s: page %d from %s: %d records", spec.name, page, location, len(records))
            group.append((location, records))
            # Pages land together up to batch_rows / batch_seconds: one transaction per page would cap the
            # rate at the commit latency rather than at the source's rate limit.
            full = sum(len(r) for _, r in group) >= spec.batch_rows
            if (
                nxt is None
                or full
                or at_limit
                or looped
                or refused
                or time.monotonic() - started >= spec.batch_seconds
            ):
                # Until the pass ends the old watermark stays the committed one: a crash resumes at `next`.
                # A looping pass ends without moving the watermark: what lies past the loop was never read.
                position: ApiPosition = (
                    {"next": None, "watermark": watermark}
                    if looped
                    else {"next": nxt, "watermark": watermark, "pending_watermark": pending}
                    if nxt
                    else {"next": None, "watermark": pending}
                )
                position = redaction.conceal(position)  # stored: ${VAR} in place of what the environment gave
                rows = [r if isinstance(r, dict) else {"value": r} for _, recs in group for r in recs]
                frame = records_frame(rows, spec.name, resp.url)
                frame.index = pd.RangeIndex(1, len(frame) + 1)
                # without a primary key a record is its content: the same on any page, batch or run
                ids = None if spec.primary_key else [content_id(r) for r in rows]
                yield Batch(frame=frame, position=position, location=group[0][0], row_ids=ids)
                group, started = [], time.monotonic()
            if looped:
                assert nxt is not None  # looped: the next request is one already made
                raise SourceError(
                    spec.name,
                    f"GET {resp.url} (page {page})",
                    f"the next page is a request this run already made ({nxt['url']} "
                    f"{nxt['params'] or ''}): the pagination loops; the {page} page(s) read have landed",
                    "check `pagination` (cursor_path / next_path) against the API",
                )
            if refused:
                assert nxt is not None  # refused: the next request is off the origin
                self.http.admit(nxt["url"])
            if at_limit:
                raise SourceError(
                    spec.name,
                    f"GET {resp.url}",
                    f"stopped after max_pages={spec.max_pages} pages; "
                    "what they held has landed and a rerun resumes at the next page",
                    "raise max_pages if the API has more pages per run",
                )
            request = nxt
