"""The fast paths give what the general paths give: Arrow's typing of canonical spellings, the binary COPY
payload, and the anti-join upsert on a table that already holds rows."""

import re

import numpy as np
import pandas as pd
import psycopg
import pytest

from etl_assets import dates as dates_mod
from etl_assets import schema as schema_mod
from etl_assets.config import CsvSource
from etl_assets.dates import DateRules
from etl_assets.inference import infer_schema
from etl_assets.integers import BEYOND_INT64, INEXACT_FLOAT, NOT_INTEGER
from etl_assets.pipeline import ingest
from etl_assets.schema import arrow_fast, coerce, coerce_column, coerce_text_column
from etl_assets.warehouse.dialects import pg_copy as copy_binary
from etl_assets.warehouse.dialects.pg_copy import encode_text

CANONICAL = {
    "integer": ["1", "-2", None, "", "007", "-9007199254740991", "0"],
    "float": ["1.5", "2", ".5", None, "1e3", "-0.000123", "5.", "6859.71", "1.7976931348623157e308"],
    "boolean": ["true", "FALSE", "True", "1", "0", None, ""],
    "timestamp": [
        "2024-12-10T21:22:02Z",
        "2024-12-10 21:22:02+01:00",
        None,
        "2024-12-10T21:22:02.123456Z",
        "",
        "1999-12-31T23:59:59.5-0530",
        "2024-12-10T21:22Z",
    ],
    "date": ["2024-12-10", None, "1970-01-01", "", "2024-02-29", "1899-12-31"],
}
# spellings Arrow would read differently from the general path (or not at all): the column must not take it
NOT_CANONICAL = {
    "integer": ["0x10", "+5", " 5", "5.0", "99999999999999999999"],
    "float": ["nan", "inf", " 1", "1_000"],
    "boolean": ["yes", "t", " true"],
    "timestamp": ["2024-12-10T21:22:02", "2024-12-10", "x"],
    "date": ["2024-02-30", "2024-2-1", "2024-12-10T00:00:00Z"],
}


@pytest.mark.parametrize("dtype", [object, "str"])
@pytest.mark.parametrize("kind", sorted(CANONICAL))
def test_arrow_types_canonical_values_as_the_general_path_does(kind, dtype):
    col = pd.Series(CANONICAL[kind], index=range(10, 10 + len(CANONICAL[kind])), dtype=dtype)
    fast = arrow_fast(col, kind)
    assert fast is not None, f"{kind}: canonical values should take the Arrow path"
    general, problems = coerce_text_column(col, kind, fast=False)
    assert problems is None  # None: every value fitted
    pd.testing.assert_series_equal(fast, general)


def test_arrow_keeps_every_digit_of_a_large_integer():
    col = pd.Series(["922337203685477580", None, "-900719925474099313"], dtype=object)
    assert arrow_fast(col, "integer").tolist()[::2] == [922337203685477580, -900719925474099313]


def plain(values: pd.Series) -> list:
    return [None if v is pd.NA else v for v in values.tolist()]


@pytest.mark.parametrize("dtype", [object, "str"])
def test_general_integer_path_is_exact_too(dtype):
    # gaps, null words, padding and 19-digit values send the column past Arrow: still never through float64
    values = [
        "9007199254740993",
        "NA",
        " 9007199254740992 ",
        "",
        "+5",
        "9223372036854775807",
        "5.0",
        "1e3",
        "-9223372036854775808",
        "9223372036854775808",
        "1.5",
        "true",
    ]
    col = pd.Series(values, index=range(3, 3 + len(values)), dtype=dtype)
    assert arrow_fast(col, "integer") is None
    typed, problems = coerce_text_column(col, "integer")
    assert str(typed.dtype) == "Int64" and list(typed.index) == list(col.index)
    ok = problems.isna()
    assert plain(typed[ok]) == [
        9007199254740993,
        None,
        9007199254740992,
        None,
        5,
        9223372036854775807,
        5,
        1000,
        -9223372036854775808,
    ]
    assert problems[~ok].tolist() == [BEYOND_INT64, NOT_INTEGER, NOT_INTEGER]
    # the same values as Python objects (an API page) give the same, value for value
    obj_typed, obj_problems = coerce_column(
        pd.Series(values, index=col.index, dtype=object).where(col != "", None), "integer"
    )
    pd.testing.assert_series_equal(obj_typed[ok], typed[ok])
    assert obj_problems.tolist() == problems.tolist()


def test_api_objects_in_an_integer_column():
    col = pd.Series(
        [10**30, 7, 7.0, 2.0**53, 2.5, True, {"a": 1}, None, float("nan"), np.int64(-3)], dtype=object
    )
    typed, problems = coerce_column(col, "integer")
    assert plain(typed)[1:3] + plain(typed)[7:] == [7, 7, None, None, -3]
    assert problems.tolist() == [
        BEYOND_INT64,
        None,
        None,
        INEXACT_FLOAT,
        NOT_INTEGER,
        NOT_INTEGER,
        NOT_INTEGER,
        None,
        None,
        None,
    ]
    widened = pd.Series([1.0, np.nan, 9007199254740992.0])  # pd.json_normalize of ints with a gap
    assert infer_schema(pd.DataFrame({"id": widened})) == {"id": "integer"}
    assert infer_schema(pd.DataFrame({"x": [1.0, 2.0]})) == {"x": "float"}  # floats without a gap stay floats
    assert coerce_column(widened, "string")[0].tolist() == [
        "1",
        None,
        None,
    ]  # "1", not "1.0"; 2^53 quarantined


def _no_general_dates(monkeypatch):
    def refuse(*args):
        raise AssertionError("canonical dates must not reach the general path")

    monkeypatch.setattr(dates_mod, "_dates", refuse)
    monkeypatch.setattr(schema_mod, "timestamps", refuse)  # schema's name for dates.timestamps


@pytest.mark.parametrize(
    "rules",
    [
        None,
        DateRules(dayfirst=True),
        DateRules(date_format={"other": "%d/%m/%Y"}),
        DateRules(decided={"d": (True, "values")}),
    ],
)
def test_canonical_dates_keep_the_arrow_path_whatever_the_date_rules(rules, monkeypatch):
    _no_general_dates(monkeypatch)
    for kind in ("date", "timestamp"):
        col = pd.Series(CANONICAL[kind], dtype="str")
        typed, problems = coerce_text_column(col, kind, name="d", rules=rules)
        pd.testing.assert_series_equal(typed, arrow_fast(col, kind))
        assert problems is None


def test_a_date_format_reads_every_value_of_its_column():
    col = pd.Series(["2026-02-13", "13/02/2026", None], dtype="str")
    typed, problems = coerce_text_column(
        col, "date", name="d", rules=DateRules(date_format={"d": "%d/%m/%Y"})
    )
    assert typed.tolist()[1] == pd.Timestamp("2026-02-13")
    assert problems.tolist() == ["does not match date_format '%d/%m/%Y' of this column", None, None]


def test_day_month_dates_read_alike_from_text_and_objects():
    values = [
        "13/02/2026",
        "01/02/2026 10:00",
        " 3.4.26 ",
        "NA",
        "",
        "02/13/2026",
        "2026-03-04",
        "31/02/2026",
        "Tue, 10 Dec 2024 10:00:00 GMT",
    ]
    for kind in ("date", "timestamp"):
        text = coerce_text_column(pd.Series(values, dtype="str"), kind, name="d", rules=DateRules())
        objects = coerce_column(pd.Series(values, dtype=object), kind, name="d", rules=DateRules())
        pd.testing.assert_series_equal(text[0], objects[0])
        assert text[1].tolist() == objects[1].tolist()
        assert [v is None for v in text[1]] == [True, True, True, True, True, False, True, False, True]
    assert text[0][2] == pd.Timestamp("2026-04-03", tz="UTC") and text[0][0] == pd.Timestamp(
        "2026-02-13", tz="UTC"
    )


@pytest.mark.parametrize("kind", sorted(NOT_CANONICAL))
def test_other_spellings_take_the_general_path(kind):
    for value in NOT_CANONICAL[kind]:
        col = pd.Series([CANONICAL[kind][0], value], dtype=object)
        assert arrow_fast(col, kind) is None, f"{kind}: {value!r} must not be typed by Arrow"
    # and the general path still decides: a hex "integer" is quarantined, "NA"-like words are NULL
    got = coerce(
        pd.DataFrame({"id": ["1", "2", "3"], "n": ["0x10", "nan", "7"]}), {"id": "integer", "n": "integer"}
    )
    assert list(got.bad["_reason"]) == ["column 'n': '0x10' is not a valid integer"]
    assert got.good["n"].tolist() == [None, 7] or got.good["n"].isna().tolist() == [True, False]


def test_string_column_nulls_and_nul_bytes():
    col = pd.Series(["a", "", None, "b\x00c", " padded "], dtype="str")
    values, problems = coerce_text_column(col, "string")
    assert values.to_numpy(dtype=object, na_value=None).tolist() == ["a", None, None, "b\x00c", " padded "]
    assert problems.tolist() == [None, None, None, "contains a NUL byte", None]
    # no Python str per value: the column stays in Arrow, for the COPY encoder to take as it is
    assert isinstance(values.array, pd.arrays.ArrowStringArray)


TYPES = {
    "i": "bigint",
    "f": "double precision",
    "b": "boolean",
    "ts": "timestamptz",
    "d": "date",
    "s": "text",
}
ENCODINGS = {"i": "int8", "f": "float8", "b": "bool", "ts": "timestamptz", "d": "date", "s": "text"}


def _typed_frame() -> pd.DataFrame:
    ts = pd.to_datetime(
        [
            "2024-01-02T03:04:05.123456Z",
            None,
            "1969-07-20T20:17:40Z",
            "2262-04-11T00:00:00Z",
            "2000-01-01T00:00:00Z",
        ],
        utc=True,
        format="ISO8601",
    )
    frame = pd.DataFrame(
        {
            "i": pd.array([1, None, -9223372036854775808, 9223372036854775807, 0], dtype="Int64"),
            "f": pd.array([1.5, None, -0.0, 1e-300, 6859.71], dtype="Float64"),
            "b": pd.array([True, None, False, True, False], dtype="boolean"),
            "ts": ts,
            "d": pd.to_datetime(["2024-02-29", None, "1899-12-31", "2000-01-01", "1999-12-31"]),
            "s": ["plain", None, "tab\tnew\nline \\ back", "ünïcødé ✓ 𝄞", "x" * 70_000],
        },
        index=[5, 6, 7, 8, 9],
    )
    return frame.iloc[
        1:
    ]  # sliced, as a batch with quarantined rows removed is (offsets no longer start at 0)


def test_binary_copy_lands_what_the_text_format_lands(pg_url):
    frame = _typed_frame()
    payload = copy_binary.encode(frame, ENCODINGS)
    assert (
        payload is not None and payload.startswith(b"PGCOPY\n\xff\r\n\x00") and payload.endswith(b"\xff\xff")
    )
    text = encode_text(
        frame, {"i": "integer", "f": "float", "b": "boolean", "ts": "timestamp", "d": "date", "s": "string"}
    )
    cols = ", ".join(f"{c} {t}" for c, t in TYPES.items())
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        for name, data, options in (("via_binary", payload, "FORMAT binary"), ("via_text", text, "NULL ''")):
            cur.execute(f"CREATE TABLE {name} (n serial, {cols})")
            with cur.copy(f"COPY {name} ({', '.join(TYPES)}) FROM STDIN ({options})") as copy:
                copy.write(data)
        binary = cur.execute("SELECT * FROM via_binary ORDER BY n").fetchall()
        texted = cur.execute("SELECT * FROM via_text ORDER BY n").fetchall()
    assert binary == texted
    assert len(binary) == 4
    assert binary[0][1:] == (None,) * 6  # the all-NULL row
    assert binary[1][1] == -9223372036854775808 and binary[1][6] == "tab\tnew\nline \\ back"
    assert str(binary[2][5]) == "2000-01-01" and binary[2][2] == 1e-300 and binary[2][6] == "ünïcødé ✓ 𝄞"
    assert len(binary[3][6]) == 70_000


def test_binary_encoder_declines_what_it_cannot_encode():
    frame = pd.DataFrame({"s": ["a", 1]}, dtype=object)  # not all text: the text format's general path
    assert copy_binary.encode(frame, {"s": "text"}) is None
    assert copy_binary.encode(pd.DataFrame({"j": ['{"a": 1}']}), {"j": None}) is None  # jsonb: text format
    assert copy_binary.encode(pd.DataFrame({"i": np.array([1.5])}), {"i": "int8"}) is None  # dtype mismatch


def test_upsert_counts_on_a_table_that_already_holds_rows(tmp_path, warehouse):
    """Batches land against a growing table: new keys are inserted, changed rows updated, unchanged left."""
    wh = warehouse
    drop = tmp_path / "drop"
    drop.mkdir()
    spec = CsvSource(
        name="acc",
        kind="csv",
        path=str(drop / "*.csv"),
        primary_key=["id"],
        chunk_rows=300,
        columns={"id": "integer", "v": "string", "amount": "float"},
    )
    rows = "\n".join(f"{i},v{i},{i / 4}" for i in range(1, 1001))
    (drop / "a.csv").write_text("id,v,amount\n" + rows + "\n")
    first = ingest(spec, wh, "r1")
    assert (first.inserted, first.updated, first.batches) == (1000, 0, 4)
    # a second file: 200 keys already there (100 changed, 100 the same) and 500 new ones
    changed = "\n".join(f"{i},v{i}{'x' if i % 2 else ''},{i / 4}" for i in range(801, 1001))
    new = "\n".join(f"{i},v{i},{i / 4}" for i in range(1001, 1501))
    (drop / "b.csv").write_text("id,v,amount\n" + changed + "\n" + new + "\n")
    second = ingest(spec, wh, "r2")
    assert (second.inserted, second.updated, second.unchanged) == (500, 100, 100)
    with wh.engine.connect() as c:
        got = c.exec_driver_sql(
            "SELECT count(*), count(*) FILTER (WHERE _etl_run_id = 'r2'), "
            "count(*) FILTER (WHERE v <> 'v' || CAST(id AS TEXT)) FROM acc"
        ).one()
    assert tuple(got) == (1500, 600, 100)


def _batches(spec: CsvSource, arrow: bool, monkeypatch) -> list:
    from etl_assets.extract import csv as csv_mod

    monkeypatch.setattr(csv_mod, "ARROW_MIN_BYTES", 0 if arrow else 1 << 62)
    out = []
    for b in csv_mod.CsvExtractor(spec).batches(None):
        frame = b.frame.astype(object).where(b.frame.notna(), None)
        out.append((frame.to_dict("split"), b.position, b.rejected))
    return out


def _messy_csv(path, rows: int, ragged_at: int | None = None) -> None:
    lines = ["\ufeffid,name,note,amount"]
    for i in range(1, rows + 1):
        if i == ragged_at:
            lines.append(f"{i},too,many,fields,here")  # pandas rejects it with its line number
            continue
        note = {0: '"multi\nline, with ""quotes"""', 1: "", 2: "ünïcødé ✓", 3: '"  padded  "'}[i % 4]
        lines.append(f"{i},name_{i},{note},{i * 0.5 if i % 5 else ''}")
        if i % 1000 == 0:
            lines.append("")  # blank lines are skipped by both readers
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_arrow_reader_gives_what_pandas_gives(tmp_path, monkeypatch, caplog):
    """Quoted newlines and quotes, a BOM, empty values, blank lines, chunk boundaries: the same frames, row
    numbers and checkpoints from Arrow's reader as from pandas'."""
    _messy_csv(tmp_path / "a.csv", 12_345)
    spec = CsvSource(name="m", kind="csv", path=str(tmp_path / "a.csv"), chunk_rows=5000)
    with caplog.at_level("DEBUG", logger="etl_assets.extract.csv"):
        fast = _batches(spec, True, monkeypatch)
    assert "with Arrow's parser" in caplog.text and "stopped" not in caplog.text
    reference = _batches(spec, False, monkeypatch)
    assert [len(f[0]["index"]) for f in fast] == [5000, 5000, 2345]
    assert fast == reference
    assert fast[0][0]["data"][3] == ["4", "name_4", 'multi\nline, with "quotes"', "2.0"]


def test_arrow_reader_hands_over_to_pandas_at_a_ragged_row(tmp_path, monkeypatch, caplog):
    # past Arrow's first block (1 MB), so Arrow has handed out whole chunks before it meets the row
    _messy_csv(tmp_path / "a.csv", 60_000, ragged_at=45_000)
    spec = CsvSource(name="m", kind="csv", path=str(tmp_path / "a.csv"), chunk_rows=5000)
    with caplog.at_level("INFO", logger="etl_assets.extract.csv"):
        fast = _batches(spec, True, monkeypatch)
    stopped = re.search(r"the fast reader stopped after row (\d+)", caplog.text)
    assert stopped and 0 < int(stopped.group(1)) <= 45_000 and int(stopped.group(1)) % 5000 == 0
    reference = _batches(spec, False, monkeypatch)
    assert fast == reference
    rejected = [r for f in fast for r in f[2]]
    assert len(rejected) == 1 and "expected 4 fields, saw 5" in rejected[0][2]
    assert sum(len(f[0]["index"]) for f in fast) == 59_999


def test_duplicate_header_keeps_the_reference_reader(tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("a,a,b\n1,2,3\n")
    spec = CsvSource(name="d", kind="csv", path=str(tmp_path / "d.csv"))
    assert _batches(spec, True, monkeypatch) == _batches(spec, False, monkeypatch)
    assert _batches(spec, True, monkeypatch)[0][0]["columns"] == ["a", "a.1", "b"]
