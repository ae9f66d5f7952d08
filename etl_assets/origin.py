"""The origin a source's URLs must keep: the configured URL's scheme, host and port, or a host of
`allowed_hosts`. Its own module because config validates `allowed_hosts` with it and http enforces it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .redaction import redact

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # lower case; "*.example.com" matches every subdomain
    port: int | None  # None: any port (an allowed_hosts entry without one)

    def admits(self, scheme: str, host: str, port: int) -> bool:
        if self.host.startswith("*."):
            host_ok = host.endswith(self.host[1:]) and host != self.host[2:]
        else:
            host_ok = host == self.host
        return host_ok and scheme == self.scheme and (self.port is None or port == self.port)

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port in (None, default) else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}"


def _split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as the request will really be sent: urllib3's parser, which requests prepares URLs
    with (it ends the host at a backslash where urllib.parse does not). A URL the two read differently, or one
    that does not parse, gets port -1: refused."""
    try:
        parts = parse_url(url)
        std = urlsplit(url)
        std_host, std_port = (std.hostname or "").lower().rstrip("."), std.port
    except (LocationParseError, ValueError):
        return "", "", -1
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").lower().strip("[]").rstrip(".")
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    if (
        "\\" in (parts.netloc or "")
        or host != std_host.strip("[]")
        or (std_port or _DEFAULT_PORTS.get(scheme, 0)) != port
    ):
        return scheme, host, -1
    return scheme, host, port


class OriginPolicy:
    """Every URL the source did not configure (next pages, Link headers, redirects) keeps the configured URL's
    scheme, host and port, or names a host of `allowed_hosts`; https never steps down to http. The configured
    headers (API keys) therefore only ever travel to hosts the user named."""

    def __init__(self, url: str, allowed_hosts: list[str] | tuple[str, ...] = ()):
        scheme, host, port = _split(url)
        self.home = Origin(scheme, host, port)
        self.allowed = [self.home, *(parse_allowed_host(h, scheme) for h in allowed_hosts)]

    def refusal(self, url: str) -> str | None:
        """Why `url` must not be requested, or None."""
        scheme, host, port = _split(url)
        if scheme not in _DEFAULT_PORTS or not host or port < 0:
            return f"{redact(url)} is not a well-formed http(s) URL with a host"
        if self.home.scheme == "https" and scheme == "http":
            return f"{Origin(scheme, host, port)} would step down from https to plain http"
        if any(o.admits(scheme, host, port) for o in self.allowed):
            return None
        return f"{Origin(scheme, host, port)} is not the configured host {self.home}" + (
            f" nor one of allowed_hosts {[str(o) for o in self.allowed[1:]]}" if len(self.allowed) > 1 else ""
        )


_HOST = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_ENTRY = re.compile(
    r"^(?:(?P<scheme>[a-z]+)://)?(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<host>[^:/\[\]]+))"
    r"(?::(?P<port>[0-9]{1,5}))?/?$"
)


def parse_allowed_host(entry: str, scheme: str = "https") -> Origin:
    """`host`, `host:port`, `*.domain`, `[ipv6]:port` or `scheme://host[:port]`; without a port, any port of
    that host; the scheme defaults to the configured URL's."""
    m = _ENTRY.match(entry.strip().lower())
    host = m and (m["ip6"] or (m["host"] or "").rstrip("."))
    port = int(m["port"]) if m and m["port"] else None
    if (
        not m
        or (m["scheme"] or scheme) not in _DEFAULT_PORTS
        or not host
        or (port is not None and not 0 < port < 65536)
        or (not m["ip6"] and not _HOST.match(host))
    ):
        raise ValueError(f"expected host, host:port, *.domain or http(s)://host[:port], got {entry!r}")
    return Origin(m["scheme"] or scheme, host, port)
