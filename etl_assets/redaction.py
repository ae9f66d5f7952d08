"""Secrets and their redaction: the one function every output channel passes text through.

A secret is every value that came from an expanded `${VAR}` (a plain address such as a base URL excepted), every
configured header value, and the user info of any URL. Secrets are registered when the sources file loads and
when headers are expanded; `redact` then replaces each by `***` in log lines, errors, lineage, metadata and the
HTTP views. Checkpoints must stay resumable, so `conceal` writes an expanded variable back as its `${VAR}` and
`reveal` expands exactly those variables again.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values ("1", "yes") would mask half of every log line and hide nothing
BODY_QUOTE_CHARS = 120  # what an error quotes of a response body

# Query parameters whose value is a credential whatever the config says (a key written literally in `url`).
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:api[-_]?key|apikey|key|token|access[-_]?token|auth|authorization|secret|client[-_]?secret|"
    r"password|passwd|pwd|sig|signature|session|sessionid|private[-_]?token)=)([^&#\s'\"]+)"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
# Header names whose values describe the request rather than authorise it.
PUBLIC_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-type", "user-agent", "cache-control", "pragma"}
)
_ADDRESS = re.compile(r"^https?://[^/?#@\s]+(/[^?#\s]*)?$")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a secret that contains another is masked whole
_by_var: dict[str, str] = {}  # variable name -> expanded value, for conceal / reveal


def _forms(value: str) -> set[str]:
    """The spellings a secret takes on the wire and in URLs."""
    return {value, quote(value, safe=""), quote_plus(value), quote(value)}


def register(*values: str | None) -> None:
    global _secrets
    new = {
        f for v in values if v and len(v) >= MIN_SECRET_CHARS for f in _forms(v) if len(f) >= MIN_SECRET_CHARS
    }
    with _lock:
        if new - set(_secrets):
            _secrets = tuple(sorted(set(_secrets) | new, key=len, reverse=True))


def register_variable(var: str, value: str, *, address_ok: bool = False) -> None:
    """A value substituted for ${var}. A plain URL (no user info, no query) substituted where an address is
    expected is an address, not a secret (`${API_BASE}`); everything else is secret."""
    if address_ok and _ADDRESS.match(value):
        return
    register(value)
    with _lock:
        _by_var[var] = value


def register_header(name: str, value: str) -> None:
    """A configured header's value; also its credential part (`Bearer <token>`, Basic's password, each cookie)."""
    if name.lower() in PUBLIC_HEADERS:
        return
    parts = [value]
    scheme, _, rest = value.partition(" ")
    if rest:
        parts.append(rest.strip())
        if scheme.lower() == "basic":
            try:
                user, _, password = (
                    base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
                )
                parts += [f"{user}:{password}", password]
            except (binascii.Error, UnicodeDecodeError):
                pass
    if name.lower() in ("cookie", "set-cookie"):
        parts += [c.partition("=")[2].strip() for c in value.split(";")]
    register(*parts)


def register_userinfo(url: str) -> None:
    """The user info of a configured URL (`https://user:password@host`): the password, and the pair."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0] if "@" in url else ""
    if userinfo:
        register(userinfo, userinfo.partition(":")[2], unquote(userinfo.partition(":")[2]))


def secrets() -> tuple[str, ...]:
    return _secrets


def _mask_registered(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def redact(text: str) -> str:
    """`text` with every registered secret, URL user info and credential-named query value replaced by ***."""
    text = _mask_registered(text if isinstance(text, str) else str(text))
    if "://" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) == MASK else MASK), text)
    return text


def _walk(obj: Any, text: Callable[[str], str], keys: bool = False) -> Any:
    """`text` applied to every string of a JSON-like value (to its mapping keys too with `keys`)."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {(text(k) if keys and isinstance(k, str) else k): _walk(v, text, keys) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_walk(v, text, keys) for v in obj]
    return obj


def redact_obj(obj: Any) -> Any:
    """`redact` through the strings of a JSON-like value (metadata, checkpoints shown to people)."""
    return _walk(obj, redact, keys=True)


def holds_secret(content: bytes) -> bool:
    return any(s.encode("utf-8") in content for s in _secrets)


def mask_obj(obj: Any) -> Any:
    """Registered secrets replaced by *** through the strings of parsed JSON (records that echo a token)."""
    return _walk(obj, _mask_registered, keys=True)


def scrub_bytes(content: bytes) -> tuple[bytes, bool]:
    """A response body with every registered secret replaced by ***, and whether one was there: a server that
    echoes a token must not put it into a table."""
    found = False
    for s in _secrets:
        b = s.encode("utf-8")
        if b in content:
            content, found = content.replace(b, MASK.encode()), True
    return content, found


def quote_body(content: bytes | str, limit: int = BODY_QUOTE_CHARS) -> str:
    """A short, printable, redacted quotation of a response body for an error line."""
    if isinstance(content, bytes):
        content = content[: limit * 4].decode("utf-8", "replace")
    text = redact(content[: limit * 4])
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.replace("\n", " "))
    return shown[:limit] + ("..." if len(shown) > limit or len(content) > limit * 4 else "")


def conceal(obj: Any) -> Any:
    """A JSON-like value to store (checkpoints): expanded variables written back as ${VAR}, other registered
    secrets ***. What people see of it still goes through `redact`."""

    def text(value: str) -> str:
        for var, secret in sorted(_by_var.items(), key=lambda kv: len(kv[1]), reverse=True):
            for form in _forms(secret):
                if len(form) >= MIN_SECRET_CHARS and form in value:
                    value = value.replace(form, "${" + var + "}")
        return _mask_registered(
            value
        )  # not `redact`: its masking of `api_key=...` would turn ${VAR} into ***

    return _walk(obj, text)


def reveal(obj: Any) -> Any:
    """The inverse of `conceal` for the variables this process expanded itself; any other `${...}` (a server may
    write one into its next-page URL) stays literal text."""

    def text(value: str) -> str:
        for var, secret in _by_var.items() if "${" in value else ():
            value = value.replace("${" + var + "}", secret)
        return value

    return _walk(obj, text)
