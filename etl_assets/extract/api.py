"""Paginated HTTP JSON APIs: one page is one batch; the checkpoint holds the next request and the watermark."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import requests

from .. import redaction
from ..config import ENV_RE, ApiSource, expand_env
from ..errors import SourceError
from ..http import OriginPolicy, SourceHttp
from ..logs import event_fields
from ..ratelimit import RateLimiter
from ..redaction import quote_body, redact
from .base import Batch
from .pagination import dig, fingerprint, make_paginator

log = logging.getLogger(__name__)


def _newer(a: Any, b: Any) -> bool:
    try:
        return b is None or a > b
    except TypeError:  # mixed types: compare as text rather than fail the run
        return str(a) > str(b)


class ApiExtractor:
    def __init__(self, spec: ApiSource, limiter: RateLimiter | None = None):
        self.spec = spec
        self.http = SourceHttp(spec.name, spec.retry, spec.timeout_seconds, limiter,
                               policy=OriginPolicy(spec.url, spec.allowed_hosts), max_bytes=spec.max_response_bytes)
        self.paginator = make_paginator(spec.pagination)

    def _headers(self) -> dict[str, str]:
        """Expanded per run; every value is a secret (registered for redaction, never logged)."""
        headers = {}
        for k, v in self.spec.headers.items():
            unset = [m.group(1) for m in ENV_RE.finditer(v) if m.group(1) not in os.environ and m.group(2) is None]
            if unset:
                raise SourceError(self.spec.name, f"headers.{k}", f"uses ${{{unset[0]}}} but {unset[0]} is not set",
                                  f"export {unset[0]} or write ${{{unset[0]}:-default}}")
            headers[k] = expand_env(v, source=self.spec.name, key=f"headers.{k}")
            redaction.register_header(k, headers[k])
        return headers

    def _records(self, resp: requests.Response) -> tuple[Any, list]:
        content = resp.content
        try:
            body = json.loads(content)
        except (ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else f"Content-Type {resp.headers.get('Content-Type', '?')}"
            raise SourceError(self.spec.name, f"GET {resp.url}",
                              f"body is not JSON ({why}): {quote_body(content, 80)!r}",
                              "check the URL points at the JSON API", retryable=True) from None
        try:
            records = dig(body, self.spec.records_path)
        except KeyError:
            keys = list(body)[:10] if isinstance(body, dict) else type(body).__name__
            raise SourceError(self.spec.name, f"GET {resp.url}",
                              f"records_path '{self.spec.records_path}' not found in the body (top level: {keys})",
                              "set records_path to the dot path of the list of records") from None
        if records is None:
            records = []
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list):
            raise SourceError(self.spec.name, f"GET {resp.url}",
                              f"records_path '{self.spec.records_path}' is a {type(records).__name__}, not a list",
                              "point records_path at the list of records")
        if redaction.holds_secret(content):  # a server that echoes a token must not put it into a table
            masked = redaction.mask_obj(records)
            if masked != records:
                records = masked
                log.warning("source %s: records of GET %s held a configured secret; it lands as ***",
                            self.spec.name, redact(resp.url), extra=event_fields("secret_in_answer", url=resp.url))
        return body, records

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
            nxt = self.paginator.next(request, resp, body, records)
            looped = nxt is not None and fingerprint(nxt) in made
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
            if nxt is None or full or at_limit or looped or time.monotonic() - started >= spec.batch_seconds:
                # Until the pass ends the old watermark stays the committed one: a crash resumes at `next`.
                # A looping pass ends without moving the watermark: what lies past the loop was never read.
                position = ({"next": None, "watermark": watermark} if looped
                            else {"next": nxt, "watermark": watermark, "pending_watermark": pending} if nxt
                            else {"next": None, "watermark": pending})
                position = redaction.conceal(position)  # stored: ${VAR} in place of what the environment gave
                rows = [r if isinstance(r, dict) else {"value": r} for _, recs in group for r in recs]
                frame = pd.json_normalize(rows, sep="__") if rows else pd.DataFrame()
                frame.index = pd.RangeIndex(1, len(frame) + 1)
                yield Batch(frame=frame, position=position, location=group[0][0])
                group, started = [], time.monotonic()
            if looped:
                raise SourceError(spec.name, f"GET {resp.url} (page {page})",
                                  f"the next page is a request this run already made ({nxt['url']} "
                                  f"{nxt['params'] or ''}): the pagination loops; the {page} page(s) read have landed",
                                  "check `pagination` (cursor_path / next_path) against the API")
            if at_limit:
                raise SourceError(spec.name, f"GET {resp.url}", f"stopped after max_pages={spec.max_pages} pages; "
                                  "what they held has landed and a rerun resumes at the next page",
                                  "raise max_pages if the API has more pages per run")
            request = nxt
