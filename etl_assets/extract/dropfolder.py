"""The drop folder: a walk of its root, matched segment by segment (glob's rules), links and special files under
control (README "Security": no symlink escape, no FIFO that blocks the reader)."""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import stat
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NamedTuple

from ..config import CsvSource
from ..errors import SourceError
from ..logs import event_fields

log = logging.getLogger(__name__)


def _segment_matches(pattern: str, name: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False  # as glob: a hidden name only matches a segment that starts with "."
    return fnmatch.fnmatchcase(name, pattern)


def pattern_segments(pattern: str) -> tuple[str, ...]:
    """The pattern below the root as segments; consecutive `**` are one (same matches, no repeated search)."""
    out: list[str] = []
    for seg in pattern.split("/"):
        if seg and not (seg == "**" and out and out[-1] == "**"):
            out.append(seg)
    return tuple(out)


def matches(pattern: Sequence[str], segments: Sequence[str]) -> bool:
    """Whether a path (its segments below the root) matches: `**` is zero or more whole segments, never hidden
    ones; any other segment is one `fnmatch` segment."""
    if not pattern:
        return not segments
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for i in range(len(segments) + 1):
            if matches(rest, segments[i:]):
                return True
            if i < len(segments) and segments[i].startswith("."):
                return False
        return False
    return bool(segments) and _segment_matches(head, segments[0]) and matches(rest, segments[1:])


def may_contain(pattern: Sequence[str], segments: Sequence[str]) -> bool:
    """Whether a match may lie below the folder at `segments` (the walk descends only where one may)."""
    if not segments:
        return bool(pattern)
    if not pattern:
        return False
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return may_contain(rest, segments) or (
            not segments[0].startswith(".") and may_contain(pattern, segments[1:])
        )
    return _segment_matches(head, segments[0]) and may_contain(rest, segments[1:])


def _inside(path: str, folder: str) -> bool:
    return path == folder or os.path.commonpath([path, folder]) == folder


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


class Refusal(NamedTuple):
    """Why a path of the drop folder is not read: a WARN line in a glob, a SourceError for a named file."""

    event: str
    problem: str
    fix: str
    target: str | None = None


LINK_FIX = "set `follow_symlinks: true` for this source, or replace the link with the file"


class DropFolder:
    """The files of one CSV source's `path`, and whether each may (still) be read."""

    def __init__(self, spec: CsvSource):
        self.spec = spec

    def files(self) -> list[Path]:
        """The files to read, sorted. The root is walked without following a link unless `follow_symlinks` (and
        then only to targets inside the root, each folder once); only regular files are kept, each real file
        once (the first path in sorted order)."""
        spec = self.spec
        top = spec.glob_root
        root = os.path.abspath(top)
        if not glob.has_magic(spec.path):
            return [self._named_file()]
        self._check_root(root)
        pattern = pattern_segments(spec.glob_pattern)
        try:
            st = os.stat(root)
        except OSError:
            return []  # no folder (yet): nothing matches, as with glob
        visited = {(st.st_dev, st.st_ino)}
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=spec.follow_symlinks):
            rel = [s for s in dirpath[len(top) :].split(os.sep) if s]
            dirnames[:] = [
                d
                for d in sorted(dirnames)
                if may_contain(pattern, [*rel, d]) and self._enter(os.path.join(dirpath, d), root, visited)
            ]
            found.extend(Path(dirpath, f) for f in filenames if matches(pattern, [*rel, f]))
        out: list[Path] = []
        seen: dict[tuple[int, int], Path] = {}
        for path in sorted(found):
            identity = self.admit(path, root)
            if identity is None:
                continue
            if identity in seen:
                log.info(
                    "source %s: skipped %s: the same file as %s, read once",
                    spec.name,
                    path,
                    seen[identity],
                    extra=event_fields(
                        "duplicate_file_skipped", source=spec.name, path=str(path), target=str(seen[identity])
                    ),
                )
                continue
            seen[identity] = path
            out.append(path)
        return out

    def key(self, path: Path | str) -> str:
        """A file's partition key: its path below the glob's root, '/'-separated."""
        return Path(os.path.relpath(path, self.spec.glob_root)).as_posix()

    def select(self, keys: Collection[str]) -> list[Path]:
        """The files of `files()` whose keys are given, sorted; a key without its file is an error."""
        found = {self.key(p): p for p in self.files()}
        missing = sorted(set(keys) - set(found))
        if missing:
            raise SourceError(
                self.spec.name,
                f"file {missing[0]} under {self.spec.glob_root}",
                "is not in the drop folder (removed or renamed), or does not match `path`",
                "drop the file again, or delete its partition",
            )
        return [p for k, p in found.items() if k in keys]

    def _named_file(self) -> Path:
        """A `path` without glob magic: that one file, or a SourceError saying why it cannot be read."""
        path = self.spec.path
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise SourceError(
                self.spec.name,
                f"path {path}",
                "file not found",
                "check `path` in sources.yaml (relative paths start at the sources file)",
            ) from None
        root = os.path.abspath(self.spec.glob_root)
        self._check_root(root)
        if stat.S_ISLNK(st.st_mode) and not self.spec.follow_symlinks:
            raise SourceError(
                self.spec.name,
                f"path {path}",
                f"is a symbolic link (to {_readlink(path)}); links are not followed",
                LINK_FIX,
            )
        refusal = self._refusal(path, root)
        if isinstance(refusal, Refusal):
            raise SourceError(self.spec.name, f"path {path}", refusal.problem, refusal.fix)
        return Path(path)

    def _check_root(self, root: str) -> None:
        """The root (real when sources.yaml was loaded) must still be real: a folder swapped for a link since
        must not redirect the walk."""
        real = os.path.realpath(root)
        if real != root:
            raise SourceError(
                self.spec.name,
                f"folder {root}",
                f"is (now) reached through a symbolic link, to {real}; the drop folder is only "
                "read at its real path",
                "point `path` at the real folder (sources.yaml fixes it when loaded) and remove the link",
            )

    def _warn(self, path: Path | str, refusal: Refusal) -> None:
        log.warning(
            "source %s: skipped %s: %s; fix: %s",
            self.spec.name,
            path,
            refusal.problem,
            refusal.fix,
            extra=event_fields(refusal.event, source=self.spec.name, path=str(path), target=refusal.target),
        )

    def _enter(self, path: str, root: str, visited: set[tuple[int, int]]) -> bool:
        """Whether the walk goes into this folder: not a link (unless followed, inside the root), not one seen."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = _readlink(path)
                if not self.spec.follow_symlinks:
                    self._warn(
                        path,
                        Refusal(
                            "symlink_skipped",
                            f"is a symbolic link to a folder (to {target}); "
                            "links are not followed, its files are not read",
                            LINK_FIX,
                            target,
                        ),
                    )
                    return False
                real = os.path.realpath(path)
                if not _inside(real, root):
                    self._warn(
                        path,
                        Refusal(
                            "symlink_refused",
                            f"links to {real}, outside the drop folder {root}",
                            "move the files into the folder (links are only followed inside it)",
                            target,
                        ),
                    )
                    return False
                st = os.stat(path)
        except OSError:
            return False  # gone, or unreadable: as glob, nothing to walk
        identity = (st.st_dev, st.st_ino)
        if identity in visited:  # a loop, or a second way to a folder already walked
            log.debug("source %s: not walking %s again (already walked)", self.spec.name, path)
            return False
        visited.add(identity)
        return True

    def _refusal(self, path: Path | str, root: str) -> Refusal | tuple[int, int]:
        """The identity (st_dev, st_ino) of a file that may be read, else why not."""
        path = str(path)
        try:
            st = os.lstat(path)
        except OSError:
            return Refusal(
                "file_vanished",
                "is gone (removed or renamed since the folder was listed)",
                "nothing to do: a file dropped again is read then",
            )
        real = os.path.realpath(path)
        link = stat.S_ISLNK(st.st_mode)
        if not self.spec.follow_symlinks and (link or real != os.path.abspath(path)):
            if link:
                target = _readlink(path)
                return Refusal(
                    "symlink_skipped",
                    f"is a symbolic link (to {target}); links are not followed",
                    LINK_FIX,
                    target,
                )
            return Refusal(
                "symlink_skipped",
                f"is reached through a symbolic link (its real path is {real}); links are not followed",
                LINK_FIX,
                real,
            )
        if not _inside(real, root):
            return Refusal(
                "symlink_refused",
                f"links to {real}, outside the drop folder {root}",
                "move the file into the folder (links are only followed inside it)",
                _readlink(path) if link else real,
            )
        if link:
            try:
                st = os.stat(path)
            except OSError:
                target = _readlink(path)
                return Refusal(
                    "symlink_skipped",
                    f"is a broken symbolic link (to {target})",
                    "remove the link or restore its target",
                    target,
                )
        if not stat.S_ISREG(st.st_mode):
            return Refusal(
                "special_file_skipped",
                f"is not a regular file (a {_file_type(st.st_mode)}); only regular files are read",
                "remove it from the drop folder, or narrow `path`",
            )
        return (st.st_dev, st.st_ino)

    def admit(self, path: Path, root: str) -> tuple[int, int] | None:
        """The file's identity when it may be read; else None, after a WARN line saying why and the fix."""
        refusal = self._refusal(path, root)
        if isinstance(refusal, Refusal):
            self._warn(path, refusal)
            return None
        return refusal
