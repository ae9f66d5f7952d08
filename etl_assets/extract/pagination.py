"""Pagination strategies: each turns one response into the next request, or None at the end.

A request is a plain dict {"url", "params"} so it can be stored in the checkpoint and resumed as is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urljoin, urlsplit

if TYPE_CHECKING:  # the API extractor imports requests; a CSV or RSS run need not
    import requests

from ..config_pagination import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PagePagination,
)

Request = dict[str, Any]
_MISSING = object()


def fingerprint(request: Request) -> str:
    """One request, however its parameters are ordered: what loop detection compares."""
    parts = urlsplit(request["url"])
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(str(k), str(v)) for k, v in (request.get("params") or {}).items()]
    return json.dumps([parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", sorted(query)])


def dig(body: Any, path: str, default: Any = _MISSING) -> Any:
    """Follow a dot path ("data.after", "items.0.id") into parsed JSON; empty path is the body itself."""
    cur = body
    for part in [p for p in path.split(".") if p]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        elif default is not _MISSING:
            return default
        else:
            raise KeyError(path)
    return cur


class Paginator:
    def first(self, url: str, params: dict[str, Any]) -> Request:
        return {"url": url, "params": dict(params)}

    def next(self, request: Request, response: requests.Response, body: Any, records: list) -> Request | None:
        return None


class NonePaginator(Paginator):
    pass


class PageNumberPaginator(Paginator):
    """?page=N&per_page=S; ends on a page shorter than `size` (or empty when no size is sent)."""

    def __init__(self, cfg: PagePagination):
        self.cfg = cfg

    def first(self, url, params):
        params = {**params, self.cfg.page_param: self.cfg.start}
        if self.cfg.size_param and self.cfg.size:
            params[self.cfg.size_param] = self.cfg.size
        return {"url": url, "params": params}

    def next(self, request, response, body, records):
        short = len(records) < self.cfg.size if (self.cfg.size_param and self.cfg.size) else not records
        if short:
            return None
        params = dict(request["params"])
        params[self.cfg.page_param] = int(params[self.cfg.page_param]) + 1
        return {"url": request["url"], "params": params}


class OffsetPaginator(Paginator):
    def __init__(self, cfg: OffsetPagination):
        self.cfg = cfg

    def first(self, url, params):
        return {
            "url": url,
            "params": {**params, self.cfg.offset_param: 0, self.cfg.limit_param: self.cfg.limit},
        }

    def next(self, request, response, body, records):
        if len(records) < self.cfg.limit:
            return None
        params = dict(request["params"])
        params[self.cfg.offset_param] = int(params[self.cfg.offset_param]) + len(records)
        return {"url": request["url"], "params": params}


class CursorPaginator(Paginator):
    """Opaque cursor from the body (Reddit `data.after`, Slack `response_metadata.next_cursor`) or, with
    `$last.<field>`, from the last record (Stripe `starting_after`). Null, "" or a false `has_more_path` end it."""

    def __init__(self, cfg: CursorPagination):
        self.cfg = cfg

    def next(self, request, response, body, records):
        if self.cfg.has_more_path and not dig(body, self.cfg.has_more_path, False):
            return None
        if self.cfg.cursor_path.startswith("$last."):
            cursor = dig(records[-1], self.cfg.cursor_path[len("$last.") :], None) if records else None
        else:
            cursor = dig(body, self.cfg.cursor_path, None)
        if cursor is None or cursor == "" or not records:
            return None
        return {"url": request["url"], "params": {**request["params"], self.cfg.cursor_param: str(cursor)}}


class LinkHeaderPaginator(Paginator):
    """RFC 8288 `Link: <...>; rel="next"` (GitHub, json-server); the next URL carries every parameter."""

    def __init__(self, cfg: LinkHeaderPagination):
        self.cfg = cfg

    def next(self, request, response, body, records):
        nxt = response.links.get("next", {}).get("url")
        return {"url": urljoin(response.url, nxt), "params": {}} if nxt else None


class NextUrlPaginator(Paginator):
    """A next-page URL in the body (DRF/SWAPI `next`), absolute or relative."""

    def __init__(self, cfg: NextUrlPagination):
        self.cfg = cfg

    def next(self, request, response, body, records):
        nxt = dig(body, self.cfg.next_path, None)
        return {"url": urljoin(response.url, str(nxt)), "params": {}} if nxt else None


_BY_TYPE = {
    "page": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": CursorPaginator,
    "link_header": LinkHeaderPaginator,
    "next_url": NextUrlPaginator,
}


def make_paginator(cfg: Any) -> Paginator:
    if isinstance(cfg, NoPagination):
        return NonePaginator()
    return _BY_TYPE[cfg.type](cfg)
