"""CSV drop folders: each file streamed in chunks, each file processed once, resumable mid-file."""

from __future__ import annotations

import codecs
import csv
import fnmatch
import glob
import hashlib
import logging
import os
import re
import stat
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..config import CsvSource
from ..errors import SourceError
from ..logs import event_fields
from .base import Batch

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
ARROW_MIN_BYTES = 4 << 20  # below this the fast reader saves nothing worth a second code path
ARROW_BLOCK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
_BAD_LINE_RE = re.compile(r"Skipping line (\d+): (.*)")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def detect_encoding(sample: bytes) -> str:
    """BOMs first; then UTF-8 if the sample decodes; latin-1 otherwise (it decodes any byte, losing nothing)."""
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # A multi-byte character may be cut at the end of the sample: let the incremental decoder wait for it.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def detect_delimiter(text: str) -> str:
    """The candidate that splits the first non-empty lines most consistently (ties: the more frequent)."""
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()][:10] or [""]
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        counts = [ln.count(d) for ln in lines]
        if counts[0] == 0:
            continue
        consistent = sum(1 for c in counts if c == counts[0])
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


# -- the drop folder: a walk of its root, matched segment by segment (glob's rules), links under control --------

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
        return may_contain(rest, segments) or (not segments[0].startswith(".") and may_contain(pattern, segments[1:]))
    return _segment_matches(head, segments[0]) and may_contain(rest, segments[1:])


def _inside(path: str, folder: str) -> bool:
    return path == folder or os.path.commonpath([path, folder]) == folder


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO (named pipe)"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
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


class CsvExtractor:
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
            rel = [s for s in dirpath[len(top):].split(os.sep) if s]
            dirnames[:] = [d for d in sorted(dirnames)
                           if may_contain(pattern, [*rel, d]) and self._enter(os.path.join(dirpath, d), root, visited)]
            found.extend(Path(dirpath, f) for f in filenames if matches(pattern, [*rel, f]))
        out: list[Path] = []
        seen: dict[tuple[int, int], Path] = {}
        for path in sorted(found):
            identity = self._admit(path, root)
            if identity is None:
                continue
            if identity in seen:
                log.info("source %s: skipped %s: the same file as %s, read once", spec.name, path, seen[identity],
                         extra=event_fields("duplicate_file_skipped", source=spec.name, path=str(path),
                                            target=str(seen[identity])))
                continue
            seen[identity] = path
            out.append(path)
        return out

    def _named_file(self) -> Path:
        """A `path` without glob magic: that one file, or a SourceError saying why it cannot be read."""
        path = self.spec.path
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise SourceError(self.spec.name, f"path {path}", "file not found",
                              "check `path` in sources.yaml (relative paths start at the sources file)") from None
        root = os.path.abspath(self.spec.glob_root)
        self._check_root(root)
        if stat.S_ISLNK(st.st_mode) and not self.spec.follow_symlinks:
            raise SourceError(self.spec.name, f"path {path}",
                              f"is a symbolic link (to {_readlink(path)}); links are not followed", LINK_FIX)
        refusal = self._refusal(path, root)
        if isinstance(refusal, Refusal):
            raise SourceError(self.spec.name, f"path {path}", refusal.problem, refusal.fix)
        return Path(path)

    def _check_root(self, root: str) -> None:
        """The root (real when sources.yaml was loaded) must still be real: a folder swapped for a link since
        must not redirect the walk."""
        real = os.path.realpath(root)
        if real != root:
            raise SourceError(self.spec.name, f"folder {root}",
                              f"is (now) reached through a symbolic link, to {real}; the drop folder is only "
                              "read at its real path", "point `path` at the real folder (sources.yaml fixes it "
                              "when loaded) and remove the link")

    def _warn(self, path: Path | str, refusal: Refusal) -> None:
        log.warning("source %s: skipped %s: %s; fix: %s", self.spec.name, path, refusal.problem, refusal.fix,
                    extra=event_fields(refusal.event, source=self.spec.name, path=str(path), target=refusal.target))

    def _enter(self, path: str, root: str, visited: set[tuple[int, int]]) -> bool:
        """Whether the walk goes into this folder: not a link (unless followed, inside the root), not one seen."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = _readlink(path)
                if not self.spec.follow_symlinks:
                    self._warn(path, Refusal("symlink_skipped", f"is a symbolic link to a folder (to {target}); "
                                             "links are not followed, its files are not read", LINK_FIX, target))
                    return False
                real = os.path.realpath(path)
                if not _inside(real, root):
                    self._warn(path, Refusal("symlink_refused", f"links to {real}, outside the drop folder {root}",
                                             "move the files into the folder (links are only followed inside "
                                             "it)", target))
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
            return Refusal("file_vanished", "is gone (removed or renamed since the folder was listed)",
                           "nothing to do: a file dropped again is read then")
        real = os.path.realpath(path)
        link = stat.S_ISLNK(st.st_mode)
        if not self.spec.follow_symlinks and (link or real != os.path.abspath(path)):
            if link:
                target = _readlink(path)
                return Refusal("symlink_skipped", f"is a symbolic link (to {target}); links are not followed",
                               LINK_FIX, target)
            return Refusal("symlink_skipped", f"is reached through a symbolic link (its real path is {real}); "
                           "links are not followed", LINK_FIX, real)
        if not _inside(real, root):
            return Refusal("symlink_refused", f"links to {real}, outside the drop folder {root}",
                           "move the file into the folder (links are only followed inside it)",
                           _readlink(path) if link else real)
        if link:
            try:
                st = os.stat(path)
            except OSError:
                target = _readlink(path)
                return Refusal("symlink_skipped", f"is a broken symbolic link (to {target})",
                               "remove the link or restore its target", target)
        if not stat.S_ISREG(st.st_mode):
            return Refusal("special_file_skipped", f"is not a regular file (a {_file_type(st.st_mode)}); only "
                           "regular files are read", "remove it from the drop folder, or narrow `path`")
        return (st.st_dev, st.st_ino)

    def _admit(self, path: Path, root: str) -> tuple[int, int] | None:
        """The file's identity when it may be read; else None, after a WARN line saying why and the fix."""
        refusal = self._refusal(path, root)
        if isinstance(refusal, Refusal):
            self._warn(path, refusal)
            return None
        return refusal

    def dialect(self, path: Path) -> tuple[str, str]:
        with path.open("rb") as f:
            sample = f.read(SAMPLE_BYTES)
        encoding = self.spec.encoding or detect_encoding(sample)
        try:
            text = sample.decode(encoding, errors="ignore" if len(sample) == SAMPLE_BYTES else "strict")
        except (UnicodeDecodeError, LookupError) as exc:
            raise SourceError(self.spec.name, f"file {path}", f"cannot be decoded as {encoding}: {exc}",
                              "set `encoding` for this source (e.g. latin-1, utf-16)") from None
        return encoding, self.spec.delimiter or detect_delimiter(text)

    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        state: dict[str, dict[str, Any]] = dict((checkpoint or {}).get("files", {}))
        paths = self.files()
        if not paths:
            log.info("source %s: no files match %s", self.spec.name, self.spec.path)
        root = os.path.abspath(self.spec.glob_root)
        for path in paths:
            if self._admit(path, root) is None:  # the folder may have changed since it was walked
                continue
            key = str(path)
            digest = file_digest(path)
            done = state.get(key)
            if done and done.get("sha256") == digest and done.get("complete"):
                continue  # this exact content already landed
            skip = done["rows"] if done and done.get("sha256") == digest else 0
            if skip:
                log.info("source %s: resuming %s after row %d", self.spec.name, path, skip)
            for frame, rows, complete, rejected in self._chunks(path, skip):
                state[key] = {"sha256": digest, "rows": rows, "complete": complete}
                yield Batch(frame=frame, position={"files": dict(state)}, location=key, rejected=rejected)

    def _chunks(self, path: Path, skip: int) -> Iterator[tuple[pd.DataFrame, int, bool, list]]:
        """Chunks with the row count after each; the last one is marked complete (one chunk of look-ahead)."""
        encoding, delimiter = self.dialect(path)
        rows = 0
        pending = None
        for chunk, rejected in self._frames(path, encoding, delimiter):
            if chunk is None:  # rejected lines reported after the last chunk
                if pending is not None:
                    pending[3].extend(rejected)
                elif rejected:
                    pending = (pd.DataFrame(), rows, False, rejected)
                continue
            n = len(chunk)
            chunk.index = pd.RangeIndex(rows + 1, rows + n + 1)
            rows += n
            if rows <= skip:
                continue
            if rows - n < skip:
                chunk = chunk.iloc[skip - (rows - n):]
            if pending is not None:
                pending[3].extend(rejected)
                yield (*pending[:2], False, pending[3])
                rejected = []
            pending = (chunk, rows, False, rejected)
        if pending is not None:
            yield (*pending[:2], True, pending[3])
        else:  # nothing left after `skip`, or a header-only file: still mark the file done
            yield pd.DataFrame(), rows, True, []

    def _frames(self, path: Path, encoding: str, delimiter: str) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """Raw chunks of `chunk_rows` rows (all text) and the lines rejected while reading them. A large UTF-8
        file is read by Arrow's multi-threaded parser; at the first row Arrow refuses (ragged, not UTF-8) the
        rest of the file is read by pandas, whose handling of messy files (short rows padded, long rows
        rejected with their line number) is the reference."""
        done = 0
        if encoding in ("utf-8", "utf-8-sig") and path.stat().st_size >= ARROW_MIN_BYTES:
            arrow = _arrow_frames(path, delimiter, self.spec.chunk_rows)
            if arrow is not None:
                log.debug("source %s: reading %s with Arrow's parser", self.spec.name, path)
                try:
                    for frame in arrow:
                        yield frame, []
                        done += len(frame)
                    return
                except pa.ArrowInvalid as exc:
                    log.info("source %s: %s: the fast reader stopped after row %d (%s); reading on with pandas",
                             self.spec.name, path, done, str(exc).splitlines()[0][:200])
        yield from self._pandas_frames(path, encoding, delimiter, done)

    def _pandas_frames(self, path: Path, encoding: str, delimiter: str,
                       skip: int) -> Iterator[tuple[pd.DataFrame | None, list]]:
        try:
            reader = pd.read_csv(
                path, sep=delimiter, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""],
                chunksize=self.spec.chunk_rows, on_bad_lines="warn", engine="c", skip_blank_lines=True,
            )
        except pd.errors.EmptyDataError:
            return
        rows = 0
        while True:
            chunk = None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                try:
                    chunk = next(reader)
                except StopIteration:
                    pass
                except UnicodeDecodeError as exc:
                    raise SourceError(self.spec.name, f"file {path} after row {rows}",
                                      f"not valid {encoding}: {exc.reason}",
                                      "set `encoding` for this source (e.g. latin-1)") from None
                except (pd.errors.ParserError, ValueError) as exc:
                    raise SourceError(self.spec.name, f"file {path} after row {rows}", f"unreadable CSV: {exc}",
                                      "fix the file or set `delimiter` / `encoding`") from None
            # pandas reports a skipped ragged line while reading on, sometimes only at the end of the file.
            rejected = [(int(m.group(1)), "", m.group(2).strip())
                        for w in caught for m in _BAD_LINE_RE.finditer(str(w.message))]
            if chunk is None:
                yield None, rejected
                break
            rows += len(chunk)
            if rows <= skip:  # what the fast reader already gave (it stopped on a later row)
                continue
            yield (chunk.iloc[skip - (rows - len(chunk)):] if rows - len(chunk) < skip else chunk), rejected
        reader.close()


def _arrow_frames(path: Path, delimiter: str, chunk_rows: int) -> Iterator[pd.DataFrame] | None:
    """The file as chunks of exactly `chunk_rows` text columns (pandas' Arrow-backed `str`), or None when the
    header is one pandas would rename (duplicate or empty names): that file keeps the reference reader."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            names = next(csv.reader(f, delimiter=delimiter), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    if not names or len(set(names)) < len(names) or "" in names:  # pandas renames these ("a.1", "Unnamed: 0")
        return None
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=ARROW_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=[""],
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True),
        )
    except pa.ArrowInvalid:
        return None
    if reader.schema.names != names or any(t != pa.string() for t in reader.schema.types):
        return None  # Arrow read the header otherwise: every column must be text, as pandas gives it

    def frames() -> Iterator[pd.DataFrame]:
        held: list[pa.RecordBatch] = []
        count = 0
        for batch in reader:
            held.append(batch)
            count += batch.num_rows
            while count >= chunk_rows:
                table = pa.Table.from_batches(held)
                yield table.slice(0, chunk_rows).to_pandas()
                rest = table.slice(chunk_rows)
                held, count = rest.to_batches(), rest.num_rows
        if count:
            yield pa.Table.from_batches(held).to_pandas()

    return frames()
