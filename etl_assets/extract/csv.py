"""CSV drop folders: each file streamed in chunks, each file processed once, resumable mid-file."""

from __future__ import annotations

import codecs
import csv
import glob
import hashlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..config import CsvSource
from ..errors import SourceError
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


class CsvExtractor:
    def __init__(self, spec: CsvSource):
        self.spec = spec

    def files(self) -> list[Path]:
        pattern = self.spec.path
        if glob.has_magic(pattern):
            return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        p = Path(pattern)
        if not p.is_file():
            raise SourceError(self.spec.name, f"path {pattern}", "file not found",
                              "check `path` in sources.yaml (relative paths start at the sources file)")
        return [p]

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
        for path in paths:
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
