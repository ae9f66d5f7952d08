"""The HTTP session every source uses: urllib3 Retry (backoff, jitter, Retry-After), timeouts, rate limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from . import faults
from .config import RetrySpec
from .errors import SourceError
from .logs import event_fields
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


class _LoggingRetry(Retry):
    """urllib3's Retry, plus one log line per retry (the URL only: headers may hold secrets)."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        why = f"HTTP {response.status}" if response is not None and response.status else type(error).__name__
        log.warning("http retry %d/%s for %s %s: %s", len(new.history), self.total, method, url, why,
                    extra=event_fields("http_retry", attempt=len(new.history), method=method, url=url, reason=why,
                                       status=response.status if response is not None else None))
        return new


class _SameHostSession(requests.Session):
    """Follows redirects on the source's own host only: a redirect elsewhere would carry its headers (API keys)
    to a host nobody configured."""

    def rebuild_auth(self, prepared_request, response):
        old, new = urlparse(response.request.url), urlparse(prepared_request.url)
        if (old.hostname, old.port) != (new.hostname, new.port):
            raise CrossHostRedirect(prepared_request.url)
        super().rebuild_auth(prepared_request, response)


class CrossHostRedirect(requests.exceptions.RequestException):
    pass


def make_session(retry: RetrySpec) -> requests.Session:
    policy = _LoggingRetry(
        total=retry.max_retries,
        backoff_factor=retry.delay_seconds,
        backoff_max=retry.max_delay_seconds,
        backoff_jitter=retry.delay_seconds,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last response is returned and reported with its status
    )
    session = _SameHostSession()
    adapter = HTTPAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "etl-assets/0.1"
    return session


class SourceHttp:
    """GETs for one source: rate-limited, retried, with errors that name the source and the URL."""

    def __init__(self, source: str, retry: RetrySpec, timeout: float, limiter: RateLimiter | None = None):
        self.source, self.timeout, self.limiter = source, timeout, limiter
        self.policy_total = retry.max_retries  # attempts beyond the first when a request finally fails
        self.session = make_session(retry)
        self.requests = 0  # attempts sent, retries included
        self.retries = 0
        self.statuses: dict[str, int] = {}  # final status per logical request: "200", "404", "error"
        self.seconds = 0.0  # time spent in requests, waits for the rate limit excluded

    def get(self, url: str, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
            ok: tuple[int, ...] = (200,)) -> requests.Response:
        faults.hit("before_request")
        slot = self.limiter.acquire() if self.limiter is not None else None
        started = time.monotonic()
        try:
            resp = self._get(url, params, headers)
        finally:
            self.seconds += time.monotonic() - started
            if slot is not None:
                self.limiter.release(slot)
        if resp.status_code not in ok:
            body = resp.text[:200].replace("\n", " ") if resp.content else ""
            raise SourceError(self.source, f"GET {resp.url}", f"HTTP {resp.status_code} {resp.reason}: {body}".rstrip(": "),
                              "check the URL, parameters and credentials" if resp.status_code < 500
                              else "the server failed; the step retries", retryable=resp.status_code >= 500)
        return resp

    def _count(self, status: str, retries: int) -> None:
        self.requests += 1 + retries
        self.retries += retries
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def _get(self, url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None) -> requests.Response:
        try:
            resp = self.session.get(url, params=params, headers=headers, timeout=(min(10.0, self.timeout), self.timeout))
        except CrossHostRedirect as exc:
            self._count("error", 0)
            raise SourceError(self.source, f"GET {url}", f"redirected to another host ({exc})",
                              "point `url` at the final location if that host is meant") from None
        except requests.exceptions.RetryError as exc:
            self._count("error", self.policy_total)
            raise SourceError(self.source, f"GET {url}", f"gave up after retries: {exc}",
                              "the server keeps failing; try later or raise retry.max_retries", retryable=True) from None
        except requests.exceptions.Timeout:
            self._count("error", self.policy_total)
            raise SourceError(self.source, f"GET {url}", f"no answer within {self.timeout}s",
                              "raise timeout_seconds or check the server", retryable=True) from None
        except requests.exceptions.ConnectionError as exc:
            self._count("error", self.policy_total)
            raise SourceError(self.source, f"GET {url}", f"cannot connect: {type(exc).__name__}",
                              "check the URL and that the server is up", retryable=True) from None
        history = getattr(getattr(resp.raw, "retries", None), "history", ()) or ()
        self._count(str(resp.status_code), len(history))
        return resp
