"""Failure injection: named fault points in the ingest loop, off by default and free when off.

ETL_FAULTS holds rules separated by `;`:   POINT=ACTION[(ARG)][@nth=N | @p=P][; seed=S]

    before_request=http_error(503)@p=0.3; seed=7     a third of the requests fail as HTTP 503
    after_batch_read=crash@nth=3                     the process dies (SIGKILL) at the third batch read
    before_commit=delay(0.5)                         every commit waits half a second
    after_batch_read=corrupt@p=0.5                   half of the batches get a mangled value

Points: before_request, after_batch_read, before_checkpoint_write, before_commit, after_commit.
Actions: raise (a retryable error), crash (SIGKILL of the process, no cleanup), delay(SECONDS),
http_error(STATUS), corrupt (one value of the batch becomes unloadable: it must end in quarantine).
Without @nth/@p a rule fires every time. @nth counts occurrences of the point in this process.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from dataclasses import dataclass
from typing import Any

POINTS = ("before_request", "after_batch_read", "before_checkpoint_write", "before_commit", "after_commit")
ACTIONS = ("raise", "crash", "delay", "http_error", "corrupt")
CORRUPT_VALUE = "\x00#corrupted-by-fault-injection#"
_RULE = re.compile(
    r"^(?P<point>\w+)=(?P<action>\w+)(?:\((?P<arg>[^)]*)\))?(?:@(?P<when>nth|p)=(?P<val>[\d.]+))?$"
)


class InjectedFault(RuntimeError):
    """Raised by `raise` and `http_error`; retryable like a dropped connection or a 5xx."""

    retryable = True


@dataclass
class Rule:
    point: str
    action: str
    arg: str | None
    nth: int | None
    p: float | None


class Faults:
    def __init__(self, spec: str):
        self.rules: list[Rule] = []
        self.counts: dict[str, int] = {}
        seed = None
        for part in (x.strip() for x in spec.split(";")):
            if not part:
                continue
            if part.startswith("seed="):
                seed = int(part[5:])
                continue
            m = _RULE.match(part)
            if not m or m["point"] not in POINTS or m["action"] not in ACTIONS:
                raise ValueError(
                    f"ETL_FAULTS: cannot read rule {part!r}; expected POINT=ACTION[(ARG)][@nth=N|@p=P] "
                    f"with POINT in {POINTS} and ACTION in {ACTIONS}"
                )
            when, val = m["when"], m["val"]
            self.rules.append(
                Rule(
                    m["point"],
                    m["action"],
                    m["arg"],
                    int(val) if when == "nth" else None,
                    float(val) if when == "p" else None,
                )
            )
        self.random = random.Random(seed)

    def hit(self, point: str, batch: Any = None) -> None:
        n = self.counts[point] = self.counts.get(point, 0) + 1
        for rule in self.rules:
            if rule.point != point:
                continue
            if rule.nth is not None and n != rule.nth:
                continue
            if rule.p is not None and self.random.random() >= rule.p:
                continue
            self._act(rule, point, n, batch)

    def _act(self, rule: Rule, point: str, n: int, batch: Any) -> None:
        if rule.action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)  # like kill -9: no finally blocks, no atexit
        if rule.action == "delay":
            time.sleep(float(rule.arg or 1.0))
        elif rule.action == "raise":
            raise InjectedFault(f"injected fault at {point} (occurrence {n})")
        elif rule.action == "http_error":
            raise InjectedFault(f"injected HTTP {rule.arg or 503} at {point} (occurrence {n})")
        elif rule.action == "corrupt" and batch is not None and len(batch.frame) and len(batch.frame.columns):
            frame = batch.frame.copy()
            row, col = self.random.randrange(len(frame)), self.random.randrange(len(frame.columns))
            frame[frame.columns[col]] = frame[frame.columns[col]].astype(
                object
            )  # an int column takes text too
            frame.iat[row, col] = CORRUPT_VALUE
            batch.frame = frame


_active: Faults | None = None
_loaded_from: str | None = None


def active() -> Faults | None:
    """The rules of ETL_FAULTS, parsed once per value; None when unset (the common, free case)."""
    global _active, _loaded_from
    spec = os.environ.get("ETL_FAULTS")
    if spec != _loaded_from:
        _active, _loaded_from = (Faults(spec) if spec else None), spec
    return _active


def hit(point: str, batch: Any = None) -> None:
    faults = active()
    if faults is not None:
        faults.hit(point, batch)
