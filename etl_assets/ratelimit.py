"""Per-source rate limit: at most `calls` requests in any window of `period_seconds`.

This limiter holds within one process (a sliding window of request times). Waits are logged and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, name: str, calls: int, period_seconds: float):
        self.name, self.calls, self.period = name, calls, period_seconds
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self.waits = 0
        self.waited_seconds = 0.0

    def acquire(self) -> float:
        """Block until a call is allowed; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._times and now - self._times[0] >= self.period:
                    self._times.popleft()
                if len(self._times) < self.calls:
                    self._times.append(now)
                    if waited:
                        self.waits += 1
                        self.waited_seconds += waited
                        log.info("rate limit %s: waited %.3fs", self.name, waited)
                    return waited
                delay = self.period - (now - self._times[0])
            time.sleep(delay)
            waited += delay
