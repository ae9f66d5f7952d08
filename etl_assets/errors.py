"""Errors a user can act on: one line naming the source, the place, the problem and the fix."""

from __future__ import annotations

from .redaction import redact


class SourceError(RuntimeError):
    """A source could not be read or loaded. `retryable` says whether trying again may help."""

    def __init__(self, source: str, place: str, problem: str, fix: str = "", *, retryable: bool = False):
        place, problem = redact(place), redact(problem)
        self.source, self.place, self.problem, self.fix, self.retryable = (
            source,
            place,
            problem,
            fix,
            retryable,
        )
        line = f"source '{source}': {place}: {problem}"
        if fix:
            line += f"; fix: {fix}"
        super().__init__(line.replace("\n", " "))
