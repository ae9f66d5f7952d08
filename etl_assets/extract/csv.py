"""CSV drop folders: each file streamed in chunks, each file processed once, resumable mid-file."""

from __future__ import annotations

import codecs
import glob
import hashlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import CsvSource
from ..errors import SourceError
from .base import Batch

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
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
        try:
            reader = pd.read_csv(
                path, sep=delimiter, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""],
                chunksize=self.spec.chunk_rows, on_bad_lines="warn", engine="c", skip_blank_lines=True,
            )
        except pd.errors.EmptyDataError:
            yield pd.DataFrame(), 0, True, []
            return
        rows = 0
        pending = None
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
                if pending is not None:
                    pending[3].extend(rejected)
                elif rejected:
                    pending = (pd.DataFrame(), rows, False, rejected)
                break
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
        reader.close()
        if pending is not None:
            yield (*pending[:2], True, pending[3])
        else:  # nothing left after `skip`, or a header-only file: still mark the file done
            yield pd.DataFrame(), rows, True, []
