"""The time budget of one HTTP attempt: connect, headers and body within `timeout_seconds`, whatever a trickling
server does. urllib3's connections are subclassed only to tell the deadline which socket to shut."""

from __future__ import annotations

import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class DeadlineExceeded(Exception):
    """An attempt outlived `timeout_seconds` (raised outside urllib3's retry list: no attempt after it)."""


class Deadline:
    """Each attempt (connect, headers, body) gets `seconds` in all: a timer shuts the socket when they are up,
    which ends a read that a trickling server keeps alive byte by byte (the socket timeout is per read). A server
    silent for `seconds` hits the socket timeout first (the grace), which urllib3 retries; an attempt that
    outlived the whole budget while bytes trickled in is not tried again."""

    def __init__(self, seconds: float):
        self.seconds, self.expired = seconds + max(0.2, 0.1 * seconds), False
        self._timer: threading.Timer | None = None

    def arm(self, conn: HTTPConnection) -> None:
        if self.expired:
            raise DeadlineExceeded()
        self.disarm()
        self._timer = threading.Timer(self.seconds, self._fire, args=(conn,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, conn: HTTPConnection) -> None:
        self.expired = True
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:  # the plain socket's shutdown, under a TLS wrapper too: the blocked read returns at once
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


current = threading.local()  # the deadline of the request this thread is making


class _Watched:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(current, "deadline", None)
        if deadline is not None:
            deadline.arm(self)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
