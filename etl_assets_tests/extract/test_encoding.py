"""Encodings, per file and per line: the file's encoding is detected from samples (or declared, and then kept);
a line that does not decode in it is quarantined with its line number, its bytes shown as \\xNN, and the rest of
the file loads. Never mojibake: a UTF-8 line in a file detected as cp1252 is quarantined too."""

from __future__ import annotations

import codecs

import pytest

from etl_assets.config import CsvSource
from etl_assets.errors import SourceError
from etl_assets.extract.csv import CsvExtractor
from etl_assets.extract.encoding import SAMPLE_BYTES, detect_encoding, file_samples
from etl_assets.pipeline import ingest

from ..conftest import corpus_dir


def spec(path, **kw) -> CsvSource:
    return CsvSource(name="enc", kind="csv", path=str(path), **kw)


def rows(wh, table="enc", order="id") -> list[tuple]:
    with wh.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(f'SELECT id, word FROM "{table}" ORDER BY {order}')]


def quarantined(wh) -> list[tuple]:
    with wh.engine.connect() as c:
        return [
            tuple(r)
            for r in c.exec_driver_sql(
                "SELECT row_number, reason, raw FROM etl_quarantine ORDER BY row_number"
            )
        ]


def test_utf8_line_lands_and_latin1_line_is_quarantined(tmp_path, warehouse):
    path = tmp_path / "mixed.csv"
    path.write_bytes("id,word\n1,café\n".encode() + "2,naïve\n".encode("latin-1") + "3,über\n".encode())
    stats = ingest(
        spec(path, primary_key=["id"], columns={"id": "integer", "word": "string"}), warehouse, "r1"
    )
    assert (stats.processed, stats.inserted, stats.failed) == (3, 2, 1)
    assert rows(warehouse) == [(1, "café"), (3, "über")]  # never `cafÃ©`
    assert quarantined(warehouse) == [
        (3, "line 3: not valid utf-8: byte 0xEF at character 5 does not decode", "2,na\\xefve")
    ]


def test_latin1_line_first_then_utf8(tmp_path, warehouse):
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"id,word\n" + "1,naïve\n".encode("latin-1") + "2,café\n3,日本\n".encode())
    stats = ingest(spec(path, primary_key=["id"]), warehouse, "r1")
    assert (stats.inserted, stats.failed) == (2, 1)
    assert rows(warehouse) == [(2, "café"), (3, "日本")]
    assert [q[:2] for q in quarantined(warehouse)] == [
        (2, "line 2: not valid utf-8: byte 0xEF at character 5 does not decode")
    ]


TEXT = ["Zürich", "naïve façade", "São Paulo"]
CASES = {  # encoding written: (words, what detection must say, or None: whatever decodes them the same)
    "utf-8": (TEXT + ["東京", "Москва ✓"], "utf-8"),
    "utf-8-sig": (TEXT + ["東京"], "utf-8-sig"),
    "utf-16-le+bom": (TEXT + ["東京"], "utf-16"),
    "utf-16-be+bom": (TEXT + ["東京"], "utf-16"),
    "cp1252": (["“Smart” quotes – it’s €5", "Café … déjà vu", "‘single’ — €12.50"], "cp1252"),
    "latin-1": (TEXT + ["Ålesund ønsker", "crème brûlée"], "cp1252"),  # cp1252 decodes latin-1 text the same
    "shift_jis": (["東京の天気は晴れです。", "明日は雨が降るでしょう。", "お寺と神社"], None),
    "gb2312": (["今天天气很好，我们去公园散步。", "明天可能会下雨。", "这里的饭菜非常好吃。"], None),
    "euc-kr": (["오늘 날씨가 좋습니다.", "내일은 비가 올 것입니다.", "여름에는 아주 덥습니다."], None),
    "ascii": (["plain", "text only", "no accents"], "utf-8"),
}


def _encode(text: str, how: str) -> bytes:
    if how == "utf-16-le+bom":
        return codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    if how == "utf-16-be+bom":
        return codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    return text.encode(how)


@pytest.mark.parametrize("how", sorted(CASES))
def test_each_encoding_lands_its_text_exactly(tmp_path, warehouse, how):
    words, expected = CASES[how]
    text = "id,word\n" + "".join(f"{i},{w}\n" for i, w in enumerate(words, 1))
    path = tmp_path / "f.csv"
    path.write_bytes(_encode(text, how))
    found = detect_encoding(*file_samples(path))
    if expected:
        assert found == expected
    assert path.read_bytes().decode(found).lstrip("\ufeff") == text
    stats = ingest(
        spec(path, primary_key=["id"], columns={"id": "integer", "word": "string"}), warehouse, "r1"
    )
    assert (stats.inserted, stats.failed) == (len(words), 0)
    assert rows(warehouse) == list(enumerate(words, 1))


def _utf8_rows(n: int, start: int = 1) -> str:
    return "".join(f'{i},ünïcødé ✓ {i},"quoted, with comma"\n' for i in range(start, start + n))


def test_large_clean_utf8_file_keeps_arrow(tmp_path, caplog):
    path = tmp_path / "big.csv"
    path.write_text("id,word,note\n" + _utf8_rows(120_000), encoding="utf-8")
    assert path.stat().st_size > 4 << 20
    with caplog.at_level("DEBUG", logger="etl_assets.extract.csv"):
        batches = list(CsvExtractor(spec(path)).batches(None))
    assert "with Arrow's parser" in caplog.text
    assert "line by line" not in caplog.text and "stopped" not in caplog.text
    assert sum(len(b.frame) for b in batches) == 120_000 and not any(b.rejected for b in batches)
    assert batches[-1].frame["word"].iloc[-1] == "ünïcødé ✓ 120000"


@pytest.mark.parametrize("n", [50_000, 120_000], ids=["pandas", "arrow"])
def test_bad_line_after_the_first_sample(tmp_path, n, caplog):
    """Past the 1 MB head (and, for the large file, inside Arrow's reading): the line is quarantined with its
    line number, every other row lands, in order."""
    path = tmp_path / "late.csv"
    half = n // 2
    data = (
        ("id,word,note\n" + _utf8_rows(half)).encode()
        + f"{half + 1},naïve,x\n".encode("latin-1")
        + _utf8_rows(n - half - 1, half + 2).encode()
    )
    path.write_bytes(data)
    assert data.index("naïve".encode("latin-1")) > SAMPLE_BYTES
    with caplog.at_level("DEBUG", logger="etl_assets.extract.csv"):
        batches = list(CsvExtractor(spec(path, chunk_rows=10_000)).batches(None))
    ids = [int(i) for b in batches for i in b.frame["id"]]
    assert ids == [i for i in range(1, n + 1) if i != half + 1]
    assert [r for b in batches for r in b.rejected] == [
        (half + 2, f"{half + 1},na\\xefve,x", "not valid utf-8: byte 0xEF at character 9 does not decode")
    ]
    assert ("with Arrow's parser" in caplog.text) == (n == 120_000)
    assert "do not read as utf-8 (detected)" in caplog.text  # the WARN with the count


def test_bad_byte_inside_a_quoted_multiline_field(tmp_path, warehouse):
    """The whole record goes (all its physical lines), the next records keep their line numbers: a record is one
    line as pandas counts them (the header is line 1), also for a ragged line after it."""
    path = tmp_path / "q.csv"
    path.write_bytes(
        b'id,word\n1,"first\nsecond caf\xe9\nthird"\n2,"ok\nstill ok"\n3,too,many\n4,fin\xc3\xa9\n'
    )
    stats = ingest(spec(path, primary_key=["id"]), warehouse, "r1")
    assert (stats.inserted, stats.failed) == (2, 2)
    assert rows(warehouse) == [(2, "ok\nstill ok"), (4, "finé")]
    assert quarantined(warehouse) == [
        (
            2,
            "line 2: not valid utf-8: byte 0xE9 at character 20 does not decode",
            '1,"first\nsecond caf\\xe9\nthird"',
        ),
        (4, "line 4: expected 2 fields, saw 3", None),
    ]


def test_a_long_run_of_undecodable_lines_is_no_end_of_file(tmp_path):
    """More than two read blocks (1 MB each) of lines that all do not decode: every one is quarantined, and the lines
    after them still load."""
    path = tmp_path / "run.csv"
    path.write_bytes(
        b"id,word\n"
        + b"".join(f"{i},na\xefve {'x' * 40}\n".encode("latin-1") for i in range(1, 60_001))
        + "".join(f"{i},café\n" for i in range(60_001, 60_011)).encode()
    )
    assert path.stat().st_size > 2 << 20
    batches = list(CsvExtractor(spec(path, encoding="utf-8")).batches(None))
    assert [int(i) for b in batches for i in b.frame["id"]] == list(range(60_001, 60_011))
    lines = [r[0] for b in batches for r in b.rejected]
    assert lines == list(range(2, 60_002))


def test_declared_encoding_is_kept_and_its_bad_lines_quarantined(tmp_path, warehouse):
    path = tmp_path / "d.csv"
    # cp1252 declared: 0x81 is no character in it; the UTF-8 bytes of `é` decode (the declaration is authoritative)
    path.write_bytes("id,word\n1,€5\n".encode("cp1252") + b"2,x\x81y\n3,caf\xc3\xa9\n")
    stats = ingest(spec(path, encoding="cp1252", primary_key=["id"]), warehouse, "r1")
    assert (stats.inserted, stats.failed) == (2, 1)
    assert rows(warehouse) == [(1, "€5"), (3, "cafÃ©")]
    assert quarantined(warehouse) == [
        (3, "line 3: not valid cp1252: byte 0x81 at character 4 does not decode", "2,x\\x81y")
    ]


def test_utf8_line_in_a_file_detected_as_cp1252_is_quarantined(tmp_path, warehouse):
    path = tmp_path / "w.csv"
    lines = ["id,word"] + [f"{i},Zürich “{i}” – €{i}" for i in range(1, 40)]
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252") + "40,café\n".encode())
    stats = ingest(
        spec(path, primary_key=["id"], columns={"id": "integer", "word": "string"}), warehouse, "r1"
    )
    assert (stats.inserted, stats.failed) == (39, 1)
    assert rows(warehouse)[0] == (1, "Zürich “1” – €1")
    assert quarantined(warehouse) == [
        (
            41,
            "line 41: valid UTF-8 in a file read as cp1252: mixed encodings; not decoded (as cp1252 it would "
            "be mojibake)",
            "40,caf\\xc3\\xa9",
        )
    ]


def test_header_that_does_not_decode_is_one_line(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"id,w\xe9rd\n1,caf\xc3\xa9\n2,\xc3\xbcber\n")
    with pytest.raises(SourceError) as err:
        list(CsvExtractor(spec(path)).batches(None))
    assert str(err.value) == (
        f"source 'enc': file {path} line 1: the header is not valid utf-8: byte 0xE9 at "
        "character 5 does not decode; fix: set `encoding` for this source (e.g. utf-8, "
        "cp1252, latin-1, utf-16)"
    )


def test_resume_mid_file_neither_loses_nor_repeats(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(
        b"id,word\n"
        + b"".join(f"{i},café\n".encode("latin-1" if i % 7 == 0 else "utf-8") for i in range(1, 101))
    )
    ex = CsvExtractor(spec(path, chunk_rows=10))
    full = list(ex.batches(None))
    good = [i for b in full for i in b.frame["id"]]
    bad = [r[0] for b in full for r in b.rejected]
    assert good == [str(i) for i in range(1, 101) if i % 7] and sorted(bad) == [
        i + 1 for i in range(7, 101, 7)
    ]
    third = full[2].position  # crashed after the third batch landed
    rest = list(ex.batches(third))
    assert [i for b in full[:3] for i in b.frame["id"]] + [i for b in rest for i in b.frame["id"]] == good
    assert sorted(
        [r[0] for b in full[:3] for r in b.rejected] + [r[0] for b in rest for r in b.rejected]
    ) == sorted(bad)


@pytest.mark.parametrize(
    "name, accept",
    [
        ("characters.csv", {"big5", "big5hkscs", "cp950"}),  # Taiwanese attractions: Big5
        ("spanish_chars.csv", {"cp1252", "latin-1", "iso8859-15"}),
        ("sparse_with_column_errors.csv", {"cp1252", "latin-1", "iso8859-15"}),
        ("weird_head_padding.csv", {"utf-8"}),
        ("utf-16le_encoded.csv", {"utf-16"}),
        ("utf8bom.csv", {"utf-8-sig"}),
    ],
)
def test_corpus_files_detected(name, accept):
    path = corpus_dir("csv-messy") / name
    found = detect_encoding(*file_samples(path))
    data = path.read_bytes()
    assert found in accept or any(data.decode(found) == data.decode(a) for a in accept), found
    if name == "characters.csv":
        frame = next(CsvExtractor(spec(path)).batches(None)).frame
        assert "景點中文名稱" in frame.columns
