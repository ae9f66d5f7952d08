"""CSV drop folders: each file streamed in chunks, each file processed once, resumable mid-file."""

from __future__ import annotations

import bisect
import codecs
import csv
import fnmatch
import functools
import glob
import hashlib
import io
import logging
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import chardet
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from chardet.enums import EncodingEra

from ..config import CsvSource
from ..errors import SourceError
from ..logs import event_fields
from .base import Batch

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20  # the head of a file: encoding and delimiter are detected from it...
EXTRA_SAMPLES = 4  # ...and, past it, from this many samples spread to the end (a bounded read whatever the size)
EXTRA_SAMPLE_BYTES = 1 << 17
ARROW_MIN_BYTES = 4 << 20  # below this the fast reader saves nothing worth a second code path
ARROW_BLOCK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
_BAD_LINE_RE = re.compile(r"Skipping line (\d+): (.*)")
_ESCAPE = "etl-assets-escape"  # the decode error handler below
_UNDECODED = re.compile("[\ud800-\udfff]")  # what _escape_undecodable makes of a byte (a valid decode never does)
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
CP1252_MARGIN = 0.75
_CHARDET = {"encoding_era": EncodingEra.MODERN_WEB, "prefer_superset": True, "compat_names": False}
# Records are split by Python's csv module where a file must be read line by line (_Decoded): it must split them
# as pandas does, and pandas has no field size limit (a 10 MB field is a field).
csv.field_size_limit(2**31 - 1)


def _escape_undecodable(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: each undecodable byte becomes the lone surrogate U+DC00+byte (lossless, and never the
    result of a valid decode), and decoding resumes at the next byte, so a delimiter, quote or newline after a bad
    lead byte is still one (UTF-16/32: whole code units, which hold no such byte)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    wide = exc.encoding.replace("-", "").replace("_", "").lower().startswith(("utf16", "utf32"))
    end = exc.end if wide else exc.start + 1
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:end]), end


codecs.register_error(_ESCAPE, _escape_undecodable)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_samples(path: Path) -> list[bytes]:
    """The head of the file (SAMPLE_BYTES) and, for a larger file, EXTRA_SAMPLES samples of EXTRA_SAMPLE_BYTES
    spread from there to its end (the last one is its tail). A file not much larger than the head is one sample."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
        rest = size - len(head)
        if rest <= 0:
            return [head]
        if rest <= EXTRA_SAMPLES * EXTRA_SAMPLE_BYTES:
            return [head + f.read()]
        samples = [head]
        for k in range(1, EXTRA_SAMPLES + 1):
            f.seek(SAMPLE_BYTES + (rest - EXTRA_SAMPLE_BYTES) * k // EXTRA_SAMPLES)
            samples.append(f.read(EXTRA_SAMPLE_BYTES))
        return samples


def _bom_encoding(sample: bytes) -> str | None:
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _utf8_valid(data: bytes, cut: bool = True) -> bool:
    """Whether `data` is UTF-8; when `cut` (a sample's end), a character cut at its end is not held against it."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
        return True
    except UnicodeDecodeError:
        return False


def _split_utf8(samples: Sequence[bytes]) -> tuple[int, int, bytes]:
    """The samples' non-ASCII lines that are UTF-8 and those that are not (counts), and the samples without the
    UTF-8 ones: what chardet is shown for the rest of the file."""
    utf8, other, kept = 0, 0, []
    for i, sample in enumerate(samples):
        lines = sample.split(b"\n")[1 if i else 0:]  # a later sample starts inside a line
        for n, line in enumerate(lines, 1):
            if not line.isascii() and _utf8_valid(line, cut=n == len(lines)):
                utf8 += 1
                continue
            other += not line.isascii()
            kept.append(line)
    return utf8, other, b"\n".join(kept)


def _chardet(data: bytes) -> tuple[str, float]:
    """chardet's answer among the encodings in use today, as the superset that decodes what the subset would
    (ISO-8859-1 -> cp1252, EUC-KR -> cp949), with its confidence; cp1252 when nothing fits. On little text the
    single-byte Latin code pages score close together: cp1252 (Excel's, and what the WHATWG standard reads for
    latin-1) wins when it is a candidate (chardet's candidates decode the data) within CP1252_MARGIN of the best
    single-byte one."""
    found = chardet.detect_all(data, max_bytes=max(len(data), 1), **_CHARDET)
    if not found or not found[0]["encoding"]:
        return "cp1252", 0.0
    best = found[0]
    for cand in found[1:]:
        if (cand["encoding"] == "cp1252" and cand["confidence"] >= CP1252_MARGIN * best["confidence"]
                and _single_byte(best["encoding"])):
            best = cand
            break
    return codecs.lookup(best["encoding"]).name, float(best["confidence"])


def detect_encoding(sample: bytes, *more: bytes) -> str:
    """The encoding of a file from its head (`sample`) and further samples (`more`, see `file_samples`): a BOM;
    then UTF-8 when every sample decodes, or when at least as many of their non-ASCII lines are UTF-8 as are not
    (a mixed file is read as UTF-8 and its other lines are quarantined, never turned into mojibake); else what
    chardet finds in the samples without their UTF-8 lines."""
    return detect_encoding_confidence(sample, *more)[0]


def detect_encoding_confidence(sample: bytes, *more: bytes) -> tuple[str, float]:
    """`detect_encoding`, with chardet's confidence (1.0 for a BOM or UTF-8)."""
    bom = _bom_encoding(sample)
    if bom:
        return bom, 1.0
    if b"\x00" in sample[:4096]:  # UTF-16/32 without a BOM is ASCII text with NUL bytes between
        wide = _chardet(sample)
        if wide[0].startswith(("utf-16", "utf-32")):
            return wide
    samples = [sample, *more]
    if all(_utf8_valid(s[s.find(b"\n") + 1:] if i else s) for i, s in enumerate(samples)):
        return "utf-8", 1.0
    utf8, other, kept = _split_utf8(samples)
    if utf8 >= other:
        return "utf-8", 1.0
    return _chardet(kept)


@functools.lru_cache(maxsize=64)
def _single_byte(encoding: str) -> bool:
    """Whether every byte is one character in `encoding` (cp1252, latin-1, koi8-r...). In such a file a non-ASCII
    line that is valid UTF-8 is UTF-8 (legacy text practically never forms UTF-8 sequences): read as the file's
    encoding it would be mojibake."""
    if codecs.lookup(encoding).name.startswith(("utf-8", "utf-16", "utf-32")):
        return False
    return len(bytes(range(0x80, 0x100)).decode(encoding, errors="replace")) == 128


@functools.lru_cache(maxsize=64)
def _utf8_as(encoding: str) -> re.Pattern[str] | None:
    """What a UTF-8 multi-byte sequence becomes when decoded in a single-byte `encoding` (`é` -> `Ã©` in cp1252):
    text holding one may be a UTF-8 line (then checked exactly, line by line). None for other encodings."""
    if not _single_byte(encoding):
        return None

    def chars(lo: int, hi: int) -> str:
        found = [bytes([b]).decode(encoding, errors="ignore") for b in range(lo, hi + 1)]
        return "[" + "".join(re.escape(c) for c in found if c) + "]"

    cont = chars(0x80, 0xBF)
    if cont == "[]":
        return None
    leads = [(chars(lo, hi), n) for lo, hi, n in ((0xC2, 0xDF, 1), (0xE0, 0xEF, 2), (0xF0, 0xF4, 3))]
    return re.compile("|".join(f"{lead}{cont}{{{n}}}" for lead, n in leads if lead != "[]"))


def _may_hold(frame: pd.DataFrame, pattern: re.Pattern[str]) -> bool:
    """Whether a header or value of `frame` matches `pattern` (Arrow's regex engine on pandas' text columns)."""
    if any(pattern.search(str(c)) for c in frame.columns):
        return True
    return any(frame[c].str.contains(pattern.pattern, regex=True, na=False).any() for c in frame.columns)


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
        """The file's encoding (the declared one, else detected from samples) and delimiter (from its head)."""
        if self.spec.encoding:
            with path.open("rb") as f:
                samples = [f.read(SAMPLE_BYTES)]
            encoding = self.spec.encoding
        else:
            samples = file_samples(path)
            encoding, confidence = detect_encoding_confidence(*samples)
            if encoding != "utf-8":
                log.info("source %s: %s: encoding detected as %s (confidence %.2f); set `encoding` if it is not",
                         self.spec.name, path, encoding, confidence,
                         extra=event_fields("encoding_detected", source=self.spec.name, path=str(path),
                                            encoding=encoding, confidence=round(confidence, 3)))
        try:  # a line that does not decode is the reader's to quarantine; the delimiter is read around it
            text = samples[0].decode(encoding, errors="replace")
        except LookupError:
            raise SourceError(self.spec.name, f"file {path}", f"unknown encoding {encoding!r}",
                              "set `encoding` to a Python codec name (e.g. utf-8, cp1252, latin-1, utf-16)") from None
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
            # A read from the top is a new version of the file (or one whose checkpoint was lost): its first batch
            # replaces the rows of every other version of this path, in that batch's transaction.
            first = skip == 0
            for frame, rows, complete, rejected in self._chunks(path, skip):
                state[key] = {"sha256": digest, "rows": rows, "complete": complete}
                yield Batch(frame=frame, position={"files": dict(state)}, location=key, rejected=rejected,
                            version=digest, replaces=first)
                first = False

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
        rejected with their line number) is the reference. A file that decodes cleanly (most do) is read by them
        alone; from the first chunk that does not, the file is read line by line (`_decoded_frames`), which
        quarantines each line that does not decode. In a detected single-byte encoding (cp1252...) a UTF-8 line
        decodes too, as mojibake: a chunk that may hold one hands over the same way."""
        done = 0
        reported: set[int] = set()  # the rejected lines already handed out, when a reader hands over
        foreign = _utf8_as(encoding) if self.spec.encoding is None else None
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
                    problem = str(exc).splitlines()[0][:200]
                    log.info("source %s: %s: the fast reader stopped after row %d (%s); reading on with pandas",
                             self.spec.name, path, done, problem)
                    if "invalid UTF8" in problem:
                        yield from self._decoded_frames(path, encoding, delimiter, done, reported)
                        return
        try:
            for frame, rejected in self._pandas_frames(path, encoding, delimiter, done, suspect=foreign):
                reported.update(line for line, _, _ in rejected)
                done += 0 if frame is None else len(frame)
                yield frame, rejected
            return
        except _Undecodable:
            pass
        yield from self._decoded_frames(path, encoding, delimiter, done, reported, foreign)

    def _decoded_frames(self, path: Path, encoding: str, delimiter: str, skip: int, reported: set[int],
                        foreign: re.Pattern[str] | None = None) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """pandas' chunks of the file's lines that decode (after `skip` rows), each with the lines rejected by
        then: ragged ones, and those that do not decode (their bytes shown as \\xNN), with pandas' line numbers."""
        log.info("source %s: %s: after row %d, not every line reads as %s: the file is read line by line",
                 self.spec.name, path, skip, encoding)
        decoded = _Decoded(path, encoding, delimiter, self.spec.name, foreign)
        try:
            for frame, rejected in self._pandas_frames(path, "utf-8", delimiter, skip, decoded):
                yield frame, [r for r in rejected + decoded.take_rejected() if r[0] not in reported]
        finally:
            decoded.close()
        if decoded.count:
            how = "detected" if self.spec.encoding is None else "declared"
            log.warning("source %s: %d line(s) of %s do not read as %s (%s): quarantined with their line "
                        "numbers, the rest loads; fix: set `encoding` if the file is in another one",
                        self.spec.name, decoded.count, path, encoding, how,
                        extra=event_fields("undecodable_lines", source=self.spec.name, path=str(path),
                                           encoding=encoding, records_failed=decoded.count))

    def _pandas_frames(self, path: Path, encoding: str, delimiter: str, skip: int, decoded: _Decoded | None = None,
                       suspect: re.Pattern[str] | None = None) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """pandas' chunks after `skip` rows, of the file or of its `decoded` lines (in UTF-8, with their own line
        numbers: mapped back to the file's). Raises _Undecodable at a chunk with a byte that does not decode in
        `encoding`, or with text that matches `suspect`."""
        line: Callable[[int], int] = decoded.line if decoded else int
        try:
            reader = pd.read_csv(
                io.BufferedReader(decoded, 1 << 20) if decoded else path, sep=delimiter, encoding=encoding,
                dtype=str, keep_default_na=False, na_values=[""], chunksize=self.spec.chunk_rows,
                on_bad_lines="warn", engine="c", skip_blank_lines=True,
            )
        except pd.errors.EmptyDataError:
            return
        except UnicodeDecodeError:
            raise _Undecodable from None
        rows = 0
        carried: list[tuple[int, str, str]] = []  # rejected while reading rows that are skipped
        while True:
            chunk = None
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                try:
                    chunk = next(reader)
                except StopIteration:
                    pass
                except UnicodeDecodeError:
                    reader.close()
                    raise _Undecodable from None
                except (pd.errors.ParserError, ValueError) as exc:
                    raise SourceError(self.spec.name, f"file {path} after row {rows}", f"unreadable CSV: {exc}",
                                      "fix the file or set `delimiter` / `encoding`") from None
            # pandas reports a skipped ragged line while reading on, sometimes only at the end of the file.
            rejected = carried + [(line(int(m.group(1))), "", m.group(2).strip())
                                  for w in caught for m in _BAD_LINE_RE.finditer(str(w.message))]
            carried = []
            if chunk is None:
                yield None, rejected
                break
            if suspect is not None and _may_hold(chunk, suspect):
                reader.close()
                raise _Undecodable
            rows += len(chunk)
            if rows <= skip:  # what the fast reader already gave (it stopped on a later row)
                carried = rejected
                continue
            yield (chunk.iloc[skip - (rows - len(chunk)):] if rows - len(chunk) < skip else chunk), rejected
        reader.close()


class _Undecodable(Exception):
    """A fast reader met a byte that does not decode: the file is read on by `_decoded_frames`."""


def _shown(text: str) -> str:
    """A line as it can be stored and read: without its line end, undecodable bytes and control characters as
    \\xNN (PostgreSQL text holds no NUL)."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text.rstrip("\r\n"))


class _Decoded(io.RawIOBase):
    """A file decoded record by record, handed on (to pandas) as UTF-8 without the records that do not decode.

    Python's csv module splits the records as pandas does: a quoted field may hold newlines, and a delimiter,
    quote or newline is never part of an undecodable byte (see `_escape_undecodable`). A record that does not
    decode (or, given `foreign` (see `_utf8_as`), is non-ASCII UTF-8 in a single-byte encoding) goes to `rejected`
    with its line number as pandas counts lines: the header is line 1, a record is one line however many newlines
    its quoted fields hold, a blank line is one. A header that does not decode is a SourceError. The checks run
    on a block of records at once; record by record only in a block that fails them."""

    def __init__(self, path: Path, encoding: str, delimiter: str, source: str,
                 foreign: re.Pattern[str] | None = None):
        super().__init__()
        self._file = path.open(encoding=encoding, errors=_ESCAPE, newline="")
        self._path, self._encoding, self._source, self._foreign = path, encoding, source, foreign
        self._records = self._split(delimiter)
        self._out = b""
        self._exhausted = False
        self._lines = 0  # records read, the header included
        self._dropped_at: list[int] = []  # for each record left out, how many were handed on before it
        self._rejected: list[tuple[int, str, str]] = []  # not yet taken
        self.count = 0  # records left out

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        while len(self._out) < want and not self._exhausted:  # a block may be all left out: that is no end
            self._out += self._fill(want)
        n = min(want, len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()

    def line(self, handed_on: int) -> int:
        """The file's line number of the `handed_on`-th line pandas read."""
        return handed_on + bisect.bisect_left(self._dropped_at, handed_on)

    def take_rejected(self) -> list[tuple[int, str, str]]:
        out, self._rejected = self._rejected, []
        return out

    def _split(self, delimiter: str) -> Iterator[str]:
        lines: list[str] = []

        def feed() -> Iterator[str]:
            for text in self._file:
                lines.append(text)
                yield text

        for _ in csv.reader(feed(), delimiter=delimiter):
            yield lines[0] if len(lines) == 1 else "".join(lines)
            lines.clear()

    def _problem(self, text: str) -> tuple[str, str] | None:
        """Why a record is left out, and how it is shown (its bytes as \\xNN where they are not text)."""
        bad = _UNDECODED.search(text)
        if bad:
            code = ord(bad.group())
            what = f"byte 0x{code - 0xDC00:02X}" if 0xDC00 <= code <= 0xDCFF else "a surrogate"
            return f"not valid {self._encoding}: {what} at character {bad.start() + 1} does not decode", _shown(text)
        if self._foreign is not None and not text.isascii():
            raw = text.encode(self._encoding)
            if _utf8_valid(raw, cut=False):
                return (f"valid UTF-8 in a file read as {self._encoding}: mixed encodings; not decoded (as "
                        f"{self._encoding} it would be mojibake)"), _shown(raw.decode("ascii", "backslashreplace"))
        return None

    def _fill(self, want: int) -> bytes:
        texts: list[str] = []
        size = 0
        try:
            for text in self._records:
                texts.append(text)
                size += len(text)
                if size >= want:
                    break
            else:
                self._exhausted = True
        except csv.Error as exc:
            raise SourceError(self._source, f"file {self._path} line {self._lines + len(texts) + 1}",
                              f"unreadable CSV: {exc}", "fix the file or set `delimiter` / `encoding`") from None
        first, self._lines = self._lines + 1, self._lines + len(texts)
        block = "".join(texts)
        if not _UNDECODED.search(block) and not (self._foreign and self._foreign.search(block)):
            return block.encode("utf-8")
        kept = []
        for line, text in enumerate(texts, first):
            problem = self._problem(text)
            if problem is None:
                kept.append(text)
                continue
            if line == 1:
                raise SourceError(self._source, f"file {self._path} line 1", f"the header is {problem[0]}",
                                  "set `encoding` for this source (e.g. utf-8, cp1252, latin-1, utf-16)")
            self._dropped_at.append(line - 1 - len(self._dropped_at))
            self._rejected.append((line, problem[1], problem[0]))
            self.count += 1
        return "".join(kept).encode("utf-8")


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
