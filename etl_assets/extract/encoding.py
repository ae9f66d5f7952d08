"""A file's text encoding: detected from bounded samples (a BOM, UTF-8, else chardet), and decoded record by
record where a fast reader cannot, so that each line that does not decode is quarantined, not the file."""

from __future__ import annotations

import bisect
import codecs
import csv
import functools
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import chardet

if TYPE_CHECKING:
    import pandas as pd
from chardet.enums import EncodingEra

from ..errors import SourceError

SAMPLE_BYTES = 1 << 20  # the head of a file: encoding and delimiter are detected from it...
EXTRA_SAMPLES = (
    4  # ...and, past it, from this many samples spread to the end (a bounded read whatever the size)
)
EXTRA_SAMPLE_BYTES = 1 << 17
_ESCAPE = "etl-assets-escape"  # the decode error handler below
_UNDECODED = re.compile(
    "[\ud800-\udfff]"
)  # what _escape_undecodable makes of a byte (a valid decode never does)
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
CP1252_MARGIN = 0.75


class _ChardetOptions(TypedDict):
    encoding_era: EncodingEra
    prefer_superset: bool
    compat_names: bool


_CHARDET: _ChardetOptions = {
    "encoding_era": EncodingEra.MODERN_WEB,
    "prefer_superset": True,
    "compat_names": False,
}
# Records are split by Python's csv module where a file must be read line by line (Decoded): it must split them
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
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : end]), end


codecs.register_error(_ESCAPE, _escape_undecodable)


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
        lines = sample.split(b"\n")[1 if i else 0 :]  # a later sample starts inside a line
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
        if (
            cand["encoding"] == "cp1252"
            and cand["confidence"] >= CP1252_MARGIN * best["confidence"]
            and _single_byte(best["encoding"])
        ):
            best = cand
            break
    assert best["encoding"] is not None  # found[0]'s was checked above; a candidate taken over it is cp1252
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
    if all(_utf8_valid(s[s.find(b"\n") + 1 :] if i else s) for i, s in enumerate(samples)):
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
def utf8_as(encoding: str) -> re.Pattern[str] | None:
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


def may_hold(frame: pd.DataFrame, pattern: re.Pattern[str]) -> bool:
    """Whether a header or value of `frame` matches `pattern` (Arrow's regex engine on pandas' text columns)."""
    if any(pattern.search(str(c)) for c in frame.columns):
        return True
    return any(frame[c].str.contains(pattern.pattern, regex=True, na=False).any() for c in frame.columns)


class Undecodable(Exception):
    """A fast reader met a byte that does not decode: the file is read on by `CsvExtractor._decoded_frames`."""


def _shown(text: str) -> str:
    """A line as it can be stored and read: without its line end, undecodable bytes and control characters as
    \\xNN (PostgreSQL text holds no NUL)."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text.rstrip("\r\n"))


class Decoded(io.RawIOBase):
    """A file decoded record by record, handed on (to pandas) as UTF-8 without the records that do not decode.

    Python's csv module splits the records as pandas does: a quoted field may hold newlines, and a delimiter,
    quote or newline is never part of an undecodable byte (see `_escape_undecodable`). A record that does not
    decode (or, given `foreign` (see `utf8_as`), is non-ASCII UTF-8 in a single-byte encoding) goes to `rejected`
    with its line number as pandas counts lines: the header is line 1, a record is one line however many newlines
    its quoted fields hold, a blank line is one. A header that does not decode is a SourceError. The checks run
    on a block of records at once; record by record only in a block that fails them."""

    def __init__(
        self, path: Path, encoding: str, delimiter: str, source: str, foreign: re.Pattern[str] | None = None
    ):
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
            return (
                f"not valid {self._encoding}: {what} at character {bad.start() + 1} does not decode",
                _shown(text),
            )
        if self._foreign is not None and not text.isascii():
            raw = text.encode(self._encoding)
            if _utf8_valid(raw, cut=False):
                return (
                    f"valid UTF-8 in a file read as {self._encoding}: mixed encodings; not decoded (as "
                    f"{self._encoding} it would be mojibake)"
                ), _shown(raw.decode("ascii", "backslashreplace"))
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
            raise SourceError(
                self._source,
                f"file {self._path} line {self._lines + len(texts) + 1}",
                f"unreadable CSV: {exc}",
                "fix the file or set `delimiter` / `encoding`",
            ) from None
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
                raise SourceError(
                    self._source,
                    f"file {self._path} line 1",
                    f"the header is {problem[0]}",
                    "set `encoding` for this source (e.g. utf-8, cp1252, latin-1, utf-16)",
                )
            self._dropped_at.append(line - 1 - len(self._dropped_at))
            self._rejected.append((line, problem[1], problem[0]))
            self.count += 1
        return "".join(kept).encode("utf-8")
