"""CSV encodings: detection accuracy on files whose encoding is known, and what reading a 100 MB file costs.

    python benchmarks/csv_encoding.py [--mb 100] [--skip-timing]

Accuracy: the corpus files whose encoding is documented (../shared/corpus: csv-messy's named and inspected files,
feedparser's encoding and illformed/chardet feeds, whose `Expect:` lines name it) and our own cases (UTF-8, BOMs,
UTF-16 LE/BE, cp1252 with smart quotes and the euro sign, latin-1, cp1250, cp1251, Shift_JIS, GB2312, EUC-KR,
ASCII; short and long), through `detect_encoding`, and through each library on its own. A guess is right when it
decodes the bytes to the same text as the documented encoding.

Timing: the CSV reader over a clean UTF-8 file (Arrow's reader), the same file with one latin-1 line at
its end (Arrow, then the line-by-line reader from the start), and the file in cp1252, detected (pandas, each
chunk checked for UTF-8 lines) and declared (pandas).
"""

from __future__ import annotations

import argparse
import codecs
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus"

from etl_assets.config import CsvSource  # noqa: E402
from etl_assets.extract.csv import CsvExtractor  # noqa: E402
from etl_assets.extract.encoding import detect_encoding, file_samples  # noqa: E402

WESTERN = {"cp1252", "latin_1", "iso8859_15"}
TEXTS = {  # encoding: (lines, the encodings that decode them to the same text count as right)
    "latin-1": (
        ["id,city,note", "1,Zürich,naïve façade", "2,Malmö,Ålesund ønsker", "3,São Paulo,crème brûlée"],
        WESTERN,
    ),
    "cp1252": (
        ["id,quote,price", "1,“Smart” quotes – it’s fine,€5", "2,Café … déjà vu,€12.50", "3,‘single’ — x,€0"],
        {"cp1252"},
    ),
    "cp1250": (["imię,miasto", "Łukasz,Łódź", "Zażółć,Gdańsk", "Jiří,Plzeň"], {"cp1250"}),
    "cp1251": (["имя,город", "Иван,Москва", "Ольга,Санкт-Петербург", "Пётр,Новосибирск"], {"cp1251"}),
    "shift_jis": (
        [
            "番号,都市,説明",
            "1,東京,渋谷区の天気は晴れです。",
            "2,大阪,明日は雨が降るでしょう。",
            "3,京都,お寺と神社がたくさんあります。",
        ],
        {"shift_jis", "cp932"},
    ),
    "gb2312": (
        [
            "编号,城市,说明",
            "1,北京,今天天气很好，我们去公园散步。",
            "2,上海,明天可能会下雨。",
            "3,广州,这里的饭菜非常好吃。",
        ],
        {"gb2312", "gbk", "gb18030"},
    ),
    "euc-kr": (
        [
            "번호,도시,설명",
            "1,서울,오늘 날씨가 좋습니다.",
            "2,부산,내일은 비가 올 것입니다.",
            "3,대구,여름에는 아주 덥습니다.",
        ],
        {"euc_kr", "cp949"},
    ),
    "utf-8": (["id,city,note", "1,Zürich,naïve", "2,東京,晴れ", "3,Москва,снег ✓"], {"utf_8"}),
    "ascii": (["id,name,amount", "1,alpha,1.5", "2,beta,2.5", "3,gamma,3.5"], {"ascii", "utf_8"}),
}


def cases() -> list[tuple[str, bytes, set[str]]]:
    out = []
    csv_dir, feeds = CORPUS / "csv-messy", CORPUS / "feeds"
    documented = [  # file, encoding: named by the file, by the feed's Expect line, or by inspection (decodes, reads)
        (csv_dir / "characters.csv", {"big5", "cp950", "big5hkscs"}),
        (csv_dir / "spanish_chars.csv", WESTERN),
        (csv_dir / "sparse_with_column_errors.csv", WESTERN),
        (csv_dir / "weird_head_padding.csv", {"utf_8"}),
        (csv_dir / "utf-16le_encoded.csv", {"utf_16"}),
        (csv_dir / "utf8bom.csv", {"utf_8_sig"}),
        (feeds / "illformed/chardet/big5.xml", {"big5", "cp950", "big5hkscs"}),
        (feeds / "illformed/chardet/euckr.xml", {"euc_kr", "cp949"}),
        (feeds / "illformed/chardet/gb2312.xml", {"gb2312", "gbk", "gb18030"}),
        (feeds / "illformed/chardet/shiftjis.xml", {"shift_jis", "cp932"}),
        (feeds / "encoding/euc-kr.xml", {"euc_kr", "cp949"}),
        (feeds / "encoding/utf-16le-bom.xml", {"utf_16"}),
        (feeds / "encoding/utf-32le-bom.xml", {"utf_32"}),
        (feeds / "encoding/utf-8-bom.xml", {"utf_8_sig"}),
    ]
    for path, accept in documented:
        if path.exists():
            out.append((f"corpus {path.relative_to(CORPUS)}", path.read_bytes(), accept))
    for enc, (lines, accept) in TEXTS.items():
        for reps, label in ((1, "short"), (40, "long")):
            text = "\n".join(lines[:1] + lines[1:] * reps) + "\n"
            out.append((f"ours {enc} {label}", text.encode(enc), accept))
    text = "\n".join(TEXTS["utf-8"][0]) + "\n"
    out += [
        ("ours utf-8 BOM", codecs.BOM_UTF8 + text.encode(), {"utf_8_sig"}),
        ("ours utf-16 LE BOM", codecs.BOM_UTF16_LE + text.encode("utf-16-le"), {"utf_16"}),
        ("ours utf-16 BE BOM", codecs.BOM_UTF16_BE + text.encode("utf-16-be"), {"utf_16"}),
    ]
    return out


def _right(data: bytes, guess: str | None, accept: set[str]) -> bool:
    if not guess:
        return False
    try:
        if codecs.lookup(guess).name.replace("-", "_") in accept:
            return True
        return any(data.decode(guess) == data.decode(a) for a in accept)
    except (LookupError, UnicodeDecodeError):
        return False


def accuracy() -> None:
    detectors = {"detect_encoding (chardet 7, samples, UTF-8 lines first)": detect_encoding}
    try:
        import chardet

        detectors[f"chardet {chardet.__version__} alone"] = lambda b: chardet.detect(b)["encoding"]
    except ImportError:
        pass
    try:
        import charset_normalizer

        detectors[f"charset-normalizer {charset_normalizer.__version__} alone"] = lambda b: (
            (m := charset_normalizer.from_bytes(b).best()) and m.encoding
        )
    except ImportError:
        pass
    all_cases = cases()
    for name, detect in detectors.items():
        wrong = [
            f"{label}: {detect(data)}"
            for label, data, accept in all_cases
            if not _right(data, detect(data), accept)
        ]
        print(f"{name}: {len(all_cases) - len(wrong)}/{len(all_cases)} right; wrong: {wrong or 'none'}")


def timing(mb: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    rows = []
    line = '{i},name_{i},ünïcødé ✓ note,{x},"quoted, with comma"\n'
    with tempfile.TemporaryDirectory(prefix="etl_enc_") as tmp:
        clean = Path(tmp) / "clean.csv"
        with clean.open("w", encoding="utf-8") as f:
            f.write("id,name,note,amount,text\n")
            size = i = 0
            while size < mb << 20:
                i += 1
                text = line.format(i=i, x=i * 0.25)
                size += len(text.encode())
                f.write(text)
        dirty = Path(tmp) / "dirty.csv"
        dirty.write_bytes(clean.read_bytes() + "0,late,naïve,1,x\n".encode("latin-1"))
        legacy = Path(tmp) / "cp1252.csv"
        legacy.write_bytes(clean.read_text("utf-8").replace("✓", "€").encode("cp1252"))
        for label, path, declared in (
            ("clean UTF-8", clean, None),
            ("UTF-8, one latin-1 line at the end", dirty, None),
            ("cp1252, detected", legacy, None),
            ("cp1252, declared", legacy, "cp1252"),
        ):
            t0 = time.perf_counter()
            samples = file_samples(path)
            enc = declared or detect_encoding(*samples)
            detect_s = 0.0 if declared else time.perf_counter() - t0
            ex = CsvExtractor(CsvSource(name="bench", kind="csv", path=str(path), encoding=declared))
            t0 = time.perf_counter()
            n = rejected = 0
            for frame, rej in ex._frames(path, enc, ","):
                n += 0 if frame is None else len(frame)
                rejected += len(rej)
            rows.append(
                (
                    label,
                    path.stat().st_size >> 20,
                    enc,
                    round(detect_s, 3),
                    n,
                    rejected,
                    round(time.perf_counter() - t0, 2),
                )
            )
    print("file | MB | encoding | detection s | rows | lines quarantined | read s")
    for r in rows:
        print(" | ".join(map(str, r)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()
    accuracy()
    if not args.skip_timing:
        timing(args.mb)


if __name__ == "__main__":
    main()
