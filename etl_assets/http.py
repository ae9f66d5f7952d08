"""The HTTP session every source uses: urllib3 Retry (backoff, jitter, Retry-After), rate limit, and the budgets
of an untrusted server: the origin every URL must keep (origin.py), the bytes and the time an answer may take."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import requests
from urllib3.util import Retry

from . import faults
from .config import RetrySpec
from .deadline import Deadline, DeadlineAdapter, DeadlineExceeded, current
from .errors import SourceError
from .logs import event_fields
from .origin import OriginPolicy
from .ratelimit import RateLimiter
from .redaction import quote_body, redact

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
CHUNK_BYTES = 64 << 10


# --- retries -----------------------------------------------------------------------------------------------------


class RetryAfterTooLong(Exception):
    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


class _LoggingRetry(Retry):
    """urllib3's Retry, plus one log line per retry (the URL only: headers may hold secrets), and a server's
    `Retry-After` honoured only up to `backoff_max` (retry.max_delay_seconds): a longer one fails at once."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        why = f"HTTP {response.status}" if response is not None and response.status else type(error).__name__
        log.warning(
            "http retry %d/%s for %s %s: %s",
            len(new.history),
            self.total,
            method,
            url,
            why,
            extra=event_fields(
                "http_retry",
                attempt=len(new.history),
                method=method,
                url=url,
                reason=why,
                status=response.status if response is not None else None,
            ),
        )
        return new

    def sleep(self, response=None) -> None:
        deadline = getattr(current, "deadline", None)
        if deadline is not None:
            deadline.disarm()  # the attempt (its body drained) is over; the backoff is not the next one's budget
        super().sleep(response)

    def sleep_for_retry(self, response) -> bool:
        after = self.get_retry_after(response)
        if after and after > self.backoff_max:
            raise RetryAfterTooLong(after)
        return super().sleep_for_retry(response)


class _NoRedirectSession(requests.Session):
    """Redirects are SourceHttp's: requests would read (and inflate) a redirect's body, with no budget, even with
    allow_redirects=False, before handing the response back."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


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
    session = _NoRedirectSession()
    adapter = DeadlineAdapter(max_retries=policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "etl-assets/0.1"
    return session


# --- the source's requests ---------------------------------------------------------------------------------------


def _content_length(value: str | None) -> int:
    """The declared length, or 0 when absent or malformed (the count of what arrives is the budget anyway)."""
    try:
        return int((value or "0").split(",")[0].strip())
    except ValueError:
        return 0


def _connect_failed(exc: requests.exceptions.ConnectionError) -> bool:
    """A refused or unresolvable connection, as opposed to one that broke while the answer came."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if name in (
            "NewConnectionError",
            "NameResolutionError",
            "ConnectTimeoutError",
            "ConnectionRefusedError",
        ):
            return True
        e = (
            getattr(e, "reason", None)
            or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)
            or e.__context__
        )
    return False


class SourceHttp:
    """GETs for one source: rate-limited, retried, within the origin and the byte and time budgets, with errors
    that name the source and the URL (redacted)."""

    def __init__(
        self,
        source: str,
        retry: RetrySpec,
        timeout: float,
        limiter: RateLimiter | None = None,
        *,
        policy: OriginPolicy | None = None,
        max_bytes: int = 100 << 20,
    ):
        self.source, self.timeout, self.limiter = source, timeout, limiter
        self.policy, self.max_bytes = policy, max_bytes
        self.max_retry_after = retry.max_delay_seconds
        self.policy_total = retry.max_retries  # attempts beyond the first when a request finally fails
        self.session = make_session(retry)
        self.requests = 0  # attempts sent, retries included
        self.retries = 0
        self.statuses: dict[str, int] = {}  # final status per logical request: "200", "404", "error"
        self.seconds = 0.0  # time spent in requests, waits for the rate limit excluded

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response:
        came_from = None
        for _ in range(MAX_REDIRECTS + 1):
            self.admit(url, came_from)
            resp = self._send(url, params, headers)
            location = resp.headers.get("Location") if resp.status_code in REDIRECT_STATUSES else None
            if not location:
                break
            resp.close()  # the body of a redirect is never read
            try:
                came_from, url, params = resp.url, urljoin(resp.url, location), None
            except ValueError:
                raise SourceError(
                    self.source,
                    f"GET {resp.url}",
                    f"redirected to a malformed URL {quote_body(location, 200)!r}",
                    "the server is broken; tell its owner",
                ) from None
            log.info("source %s: redirected to %s", self.source, redact(url))
        else:
            raise SourceError(
                self.source,
                f"GET {url}",
                f"more than {MAX_REDIRECTS} redirects",
                "point `url` at the final location",
            )
        self._read_body(resp)
        if resp.status_code not in ok:
            body = quote_body(resp.content) if resp.content else ""
            raise SourceError(
                self.source,
                f"GET {resp.url}",
                f"HTTP {resp.status_code} {resp.reason}: {body}".rstrip(": "),
                "check the URL, parameters and credentials"
                if resp.status_code < 500
                else "the server failed; the step retries",
                retryable=resp.status_code >= 500,
            )
        return resp

    def refused(self, url: str) -> bool:
        return self.policy is not None and self.policy.refusal(url) is not None

    def admit(self, url: str, came_from: str | None = None) -> None:
        """Raise the one-line refusal when the origin policy does not admit `url`."""
        why = self.policy.refusal(url) if self.policy is not None else None
        if why:
            self._count("refused", 0)
            place, what = (
                (f"GET {came_from}", f"redirected to {url}") if came_from else (f"GET {url}", "refused")
            )
            raise SourceError(
                self.source,
                place,
                f"{what}: {why}, and the source's headers go to no other host",
                "if that host is meant, add it to the source's allowed_hosts",
            )

    def _send(
        self, url: str, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None
    ) -> requests.Response:
        faults.hit("before_request")
        limiter = self.limiter
        slot = limiter.acquire() if limiter is not None else None
        started = time.monotonic()
        current.deadline = deadline = Deadline(self.timeout)
        try:
            resp = self.session.get(
                url,
                params=params,
                headers=headers,
                allow_redirects=False,
                stream=True,
                timeout=(min(10.0, self.timeout), self.timeout),
            )
        except (DeadlineExceeded, requests.exceptions.RequestException, RetryAfterTooLong) as exc:
            deadline.disarm()
            full = requests.Request("GET", url, params=params).prepare().url or url
            raise self._failure(full, exc, deadline.expired) from None
        finally:
            current.deadline = None
            self.seconds += time.monotonic() - started
            if limiter is not None and slot is not None:
                limiter.release(slot)
        resp._etl_deadline = deadline  # type: ignore[attr-defined]  # the body is read under the same budget
        history = getattr(getattr(resp.raw, "retries", None), "history", ()) or ()
        self._count(str(resp.status_code), len(history))
        return resp

    def _read_body(self, resp: requests.Response) -> None:
        """Read the body within max_response_bytes (counted after decompression, so a gzip bomb stops early)
        and within the attempt's time; the response then holds it as `content`."""
        deadline: Deadline = resp._etl_deadline  # type: ignore[attr-defined]
        place = f"GET {resp.url}"
        started = time.monotonic()
        try:
            declared = _content_length(resp.headers.get("Content-Length"))
            if declared > self.max_bytes:
                raise self._too_big(place, f"declares {declared:,} bytes")
            chunks, size = [], 0
            for chunk in resp.iter_content(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_big(place, f"went past {self.max_bytes:,} bytes")
                chunks.append(chunk)
            resp._content = b"".join(chunks)  # what requests' .content/.json() read from
        except SourceError:
            self._recount(str(resp.status_code))
            raise
        except (requests.exceptions.RequestException, DeadlineExceeded) as exc:
            self._recount(str(resp.status_code))
            raise self._failure(resp.url, exc, deadline.expired, count=False) from None
        finally:
            deadline.disarm()
            self.seconds += time.monotonic() - started
            resp.close()

    def _too_big(self, place: str, what: str) -> SourceError:
        return SourceError(
            self.source,
            place,
            f"answer too large: it {what}, above max_response_bytes="
            f"{self.max_bytes:,} (counted after decompression)",
            "raise max_response_bytes if answers this large are expected",
        )

    def _failure(self, url: str, exc: BaseException, expired: bool, count: bool = True) -> SourceError:
        place = f"GET {url}"
        if isinstance(exc, RetryAfterTooLong):
            if count:
                self._count("error", 0)
            return SourceError(
                self.source,
                place,
                f"the server asked to retry after {exc.seconds:g} s (Retry-After), "
                f"more than retry.max_delay_seconds={self.max_retry_after:g}",
                "try later, or raise retry.max_delay_seconds to wait that long",
            )
        if count:
            self._count("error", self.policy_total)
        if expired or isinstance(exc, DeadlineExceeded | requests.exceptions.Timeout):
            return SourceError(
                self.source,
                place,
                f"no complete answer within {self.timeout:g} s",
                "raise timeout_seconds or check the server",
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.RetryError):
            return SourceError(
                self.source,
                place,
                f"gave up after retries: {redact(str(exc))[:200]}",
                "the server keeps failing; try later or raise retry.max_retries",
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ConnectionError) and _connect_failed(exc):
            return SourceError(
                self.source,
                place,
                "cannot connect",
                "check the URL and that the server is up",
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return SourceError(
                self.source,
                place,
                "the connection broke before the answer was complete",
                "the server dropped the connection; the step retries",
                retryable=True,
            )
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return SourceError(
                self.source,
                place,
                "the answer's Content-Encoding does not decode",
                "check the server's compression",
            )
        return SourceError(
            self.source,
            place,
            f"request failed: {type(exc).__name__}",
            "check the URL and the server",
            retryable=True,
        )

    def _recount(self, status: str) -> None:
        """The request counted as `status` ended in an error after all (its body could not be read)."""
        self.statuses[status] -= 1
        if not self.statuses[status]:
            del self.statuses[status]
        self.statuses["error"] = self.statuses.get("error", 0) + 1

    def _count(self, status: str, retries: int) -> None:
        self.requests += 1 + retries
        self.retries += retries
        self.statuses[status] = self.statuses.get(status, 0) + 1
