"""CSV drop folders: each file streamed in chunks, each file processed once, resumable mid-file.

The walk of the folder is dropfolder.py's, the text encoding encoding.py's; this module reads the files."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arrow_pool import configure_arrow
from ..config import CsvSource
from ..errors import SourceError
from ..logs import event_fields
from .base import Batch, CsvFileState, ExtractorStats
from .dropfolder import DropFolder
from .encoding import (
    SAMPLE_BYTES,
    Decoded,
    Undecodable,
    detect_encoding_confidence,
    file_samples,
    may_hold,
    utf8_as,
)

if TYPE_CHECKING:  # pandas and pyarrow: imported where a file is read, not to list or hash the files
    import pandas as pd

log = logging.getLogger(__name__)

ARROW_MIN_BYTES = 4 << 20  # below this the fast reader saves nothing worth a second code path
ARROW_BLOCK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
_BAD_LINE_RE = re.compile(r"Skipping line (\d+): (.*)")


def file_digest(path: Path) -> str:
    with path.open("rb") as f:  # read into one reused buffer, hashed without the GIL
        return hashlib.file_digest(f, "sha256").hexdigest()


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


class CsvExtractor:
    """`files`: the partition keys (paths below the glob's root) to read, None for all; a key whose file is
    gone is an error."""

    def __init__(self, spec: CsvSource, files: Collection[str] | None = None):
        self.spec = spec
        self.folder = DropFolder(spec)
        self.only = None if files is None else frozenset(files)
        self._pinned: list[Path] | None = None

    def files(self) -> list[Path]:
        """The files to read, sorted (see `DropFolder.files`)."""
        if self._pinned is not None:
            return self._pinned
        return self.folder.files() if self.only is None else self.folder.select(self.only)

    def pin(self) -> list[str]:
        """List the files now and read exactly these (the run locks them first); their partition keys."""
        self._pinned = self.files()
        return [self.folder.key(p) for p in self._pinned]

    def stats(self) -> ExtractorStats:
        return ExtractorStats()  # files: nothing read over HTTP

    def first_batch(self, path: Path) -> pd.DataFrame:
        """The first chunk of one file as the extractor reads it (raw text columns), e.g. to check its header."""
        return next(self._chunks(path, 0))[0]

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
                log.info(
                    "source %s: %s: encoding detected as %s (confidence %.2f); set `encoding` if it is not",
                    self.spec.name,
                    path,
                    encoding,
                    confidence,
                    extra=event_fields(
                        "encoding_detected",
                        source=self.spec.name,
                        path=str(path),
                        encoding=encoding,
                        confidence=round(confidence, 3),
                    ),
                )
        try:  # a line that does not decode is the reader's to quarantine; the delimiter is read around it
            text = samples[0].decode(encoding, errors="replace")
        except LookupError:
            raise SourceError(
                self.spec.name,
                f"file {path}",
                f"unknown encoding {encoding!r}",
                "set `encoding` to a Python codec name (e.g. utf-8, cp1252, latin-1, utf-16)",
            ) from None
        return encoding, self.spec.delimiter or detect_delimiter(text)

    def batches(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        state: dict[str, CsvFileState] = dict((checkpoint or {}).get("files", {}))
        paths = self.files()
        if not paths:
            log.info("source %s: no files match %s", self.spec.name, self.spec.path)
        root = os.path.abspath(self.spec.glob_root)
        for path in paths:
            if self.folder.admit(path, root) is None:  # the folder may have changed since it was walked
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
                yield Batch(
                    frame=frame,
                    position={"files": dict(state)},
                    location=key,
                    rejected=rejected,
                    version=digest,
                    replaces=first,
                )
                first = False

    def _chunks(self, path: Path, skip: int) -> Iterator[tuple[pd.DataFrame, int, bool, list]]:
        """Chunks with the row count after each; the last one is marked complete (one chunk of look-ahead)."""
        import pandas as pd

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
                chunk = chunk.iloc[skip - (rows - n) :]
            if pending is not None:
                pending[3].extend(rejected)
                yield (*pending[:2], False, pending[3])
                rejected = []
            pending = (chunk, rows, False, rejected)
        if pending is not None:
            yield (*pending[:2], True, pending[3])
        else:  # nothing left after `skip`, or a header-only file: still mark the file done
            yield pd.DataFrame(), rows, True, []

    def _frames(
        self, path: Path, encoding: str, delimiter: str
    ) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """Raw chunks of `chunk_rows` rows (all text) and the lines rejected while reading them. A large UTF-8
        file is read by Arrow's multi-threaded parser; at the first row Arrow refuses (ragged, not UTF-8) the
        rest of the file is read by pandas, whose handling of messy files (short rows padded, long rows
        rejected with their line number) is the reference. A file that decodes cleanly (most do) is read by them
        alone; from the first chunk that does not, the file is read line by line (`_decoded_frames`), quarantining
        each line that does not decode. In a detected single-byte encoding (cp1252...) a UTF-8 line decodes too,
        as mojibake: a chunk that may hold one hands over the same way."""
        import pyarrow as pa

        configure_arrow()  # the process's Arrow memory pool, before its first allocation
        done = 0
        reported: set[int] = set()  # the rejected lines already handed out, when a reader hands over
        foreign = utf8_as(encoding) if self.spec.encoding is None else None
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
                    log.info(
                        "source %s: %s: the fast reader stopped after row %d (%s); reading on with pandas",
                        self.spec.name,
                        path,
                        done,
                        problem,
                    )
                    if "invalid UTF8" in problem:
                        yield from self._decoded_frames(path, encoding, delimiter, done, reported)
                        return
        try:
            for frame, rejected in self._pandas_frames(path, encoding, delimiter, done, suspect=foreign):
                reported.update(line for line, _, _ in rejected)
                done += 0 if frame is None else len(frame)
                yield frame, rejected
            return
        except Undecodable:
            pass
        yield from self._decoded_frames(path, encoding, delimiter, done, reported, foreign)

    def _decoded_frames(
        self,
        path: Path,
        encoding: str,
        delimiter: str,
        skip: int,
        reported: set[int],
        foreign: re.Pattern[str] | None = None,
    ) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """pandas' chunks of the file's lines that decode (after `skip` rows), each with the lines rejected by
        then: ragged ones, and those that do not decode (their bytes shown as \\xNN), with pandas' line numbers."""
        log.info(
            "source %s: %s: after row %d, not every line reads as %s: the file is read line by line",
            self.spec.name,
            path,
            skip,
            encoding,
        )
        decoded = Decoded(path, encoding, delimiter, self.spec.name, foreign)
        try:
            for frame, rejected in self._pandas_frames(path, "utf-8", delimiter, skip, decoded):
                yield frame, [r for r in rejected + decoded.take_rejected() if r[0] not in reported]
        finally:
            decoded.close()
        if decoded.count:
            how = "detected" if self.spec.encoding is None else "declared"
            log.warning(
                "source %s: %d line(s) of %s do not read as %s (%s): quarantined with their line "
                "numbers, the rest loads; fix: set `encoding` if the file is in another one",
                self.spec.name,
                decoded.count,
                path,
                encoding,
                how,
                extra=event_fields(
                    "undecodable_lines",
                    source=self.spec.name,
                    path=str(path),
                    encoding=encoding,
                    records_failed=decoded.count,
                ),
            )

    def _pandas_frames(
        self,
        path: Path,
        encoding: str,
        delimiter: str,
        skip: int,
        decoded: Decoded | None = None,
        suspect: re.Pattern[str] | None = None,
    ) -> Iterator[tuple[pd.DataFrame | None, list]]:
        """pandas' chunks after `skip` rows, of the file or of its `decoded` lines (in UTF-8, with their own line
        numbers: mapped back to the file's). Raises Undecodable at a chunk with a byte that does not decode in
        `encoding`, or with text that matches `suspect`."""
        import pandas as pd

        line: Callable[[int], int] = decoded.line if decoded else int
        try:
            reader = pd.read_csv(
                io.BufferedReader(decoded, 1 << 20) if decoded else path,
                sep=delimiter,
                encoding=encoding,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                chunksize=self.spec.chunk_rows,
                on_bad_lines="warn",
                engine="c",
                skip_blank_lines=True,
            )
        except pd.errors.EmptyDataError:
            return
        except UnicodeDecodeError:
            raise Undecodable from None
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
                    raise Undecodable from None
                except (pd.errors.ParserError, ValueError) as exc:
                    raise SourceError(
                        self.spec.name,
                        f"file {path} after row {rows}",
                        f"unreadable CSV: {exc}",
                        "fix the file or set `delimiter` / `encoding`",
                    ) from None
            # pandas reports a skipped ragged line while reading on, sometimes only at the end of the file.
            rejected = carried + [
                (line(int(m.group(1))), "", m.group(2).strip())
                for w in caught
                for m in _BAD_LINE_RE.finditer(str(w.message))
            ]
            carried = []
            if chunk is None:
                yield None, rejected
                break
            if suspect is not None and may_hold(chunk, suspect):
                reader.close()
                raise Undecodable
            rows += len(chunk)
            if rows <= skip:  # what the fast reader already gave (it stopped on a later row)
                carried = rejected
                continue
            yield (chunk.iloc[skip - (rows - len(chunk)) :] if rows - len(chunk) < skip else chunk), rejected
        reader.close()


def _arrow_frames(path: Path, delimiter: str, chunk_rows: int) -> Iterator[pd.DataFrame] | None:
    """The file as chunks of exactly `chunk_rows` text columns (pandas' Arrow-backed `str`), or None when the
    header is one pandas would rename (duplicate or empty names): that file keeps the reference reader."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

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
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
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
