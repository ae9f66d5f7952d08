import pytest

from etl_assets.config import CsvSource
from etl_assets.errors import SourceError
from etl_assets.extract.csv import CsvExtractor, detect_delimiter
from etl_assets.extract.encoding import detect_encoding
from etl_assets.pipeline import ingest

HEADER = "id,name,amount\n"


def spec(path, **kw):
    return CsvSource(name="orders", kind="csv", path=str(path), **kw)


def write_rows(path, n, start=1, encoding="utf-8", sep=","):
    lines = [HEADER.replace(",", sep)] + [
        f"{i}{sep}name {i}{sep}{i * 1.5}\n" for i in range(start, start + n)
    ]
    path.write_bytes("".join(lines).encode(encoding))


@pytest.mark.parametrize(
    "encoding, expected",
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("latin-1", "cp1252")],
)
def test_encodings_detected_and_decoded(tmp_path, encoding, expected):
    path = tmp_path / "f.csv"
    path.write_bytes("id,city\n1,Zürich\n2,Malmö\n3,Ålesund\n".encode(encoding))
    assert detect_encoding(path.read_bytes()) == expected
    frames = [b.frame for b in CsvExtractor(spec(path)).batches(None)]
    assert list(frames[0]["city"]) == ["Zürich", "Malmö", "Ålesund"]
    assert list(frames[0].columns) == ["id", "city"]  # no BOM left in the first header


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiters_detected(tmp_path, sep):
    path = tmp_path / "f.csv"
    write_rows(path, 5, sep=sep)
    assert detect_delimiter(path.read_text()) == sep
    frame = next(CsvExtractor(spec(path)).batches(None)).frame
    assert list(frame.columns) == ["id", "name", "amount"] and len(frame) == 5


def test_configured_delimiter_and_encoding_win(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes("a;b\n1,5;x\n".encode("cp1252"))
    frame = next(CsvExtractor(spec(path, delimiter=";", encoding="cp1252")).batches(None)).frame
    assert frame.iloc[0].tolist() == ["1,5", "x"]


def test_streams_in_chunks_with_positions(tmp_path):
    path = tmp_path / "f.csv"
    write_rows(path, 95)
    batches = list(CsvExtractor(spec(path, chunk_rows=10)).batches(None))
    assert [len(b.frame) for b in batches] == [10] * 9 + [5]
    assert [b.position["files"][str(path)]["rows"] for b in batches] == [
        10,
        20,
        30,
        40,
        50,
        60,
        70,
        80,
        90,
        95,
    ]
    assert [b.position["files"][str(path)]["complete"] for b in batches] == [False] * 9 + [True]
    assert list(batches[3].frame.index) == list(range(31, 41))  # row numbers are stable identities


def test_resume_mid_file_from_checkpoint(tmp_path):
    path = tmp_path / "f.csv"
    write_rows(path, 95)
    ex = CsvExtractor(spec(path, chunk_rows=10))
    third = list(ex.batches(None))[2].position  # crashed after the third batch landed
    rest = list(ex.batches(third))
    assert rest[0].frame["id"].tolist()[0] == "31"
    assert sum(len(b.frame) for b in rest) == 65


def test_resume_with_chunk_size_changed_still_exact(tmp_path):
    path = tmp_path / "f.csv"
    write_rows(path, 50)
    cp = list(CsvExtractor(spec(path, chunk_rows=7)).batches(None))[2].position  # 21 rows done
    rest = list(CsvExtractor(spec(path, chunk_rows=10)).batches(cp))
    ids = [i for b in rest for i in b.frame["id"].tolist()]
    assert ids == [str(i) for i in range(22, 51)]


def test_each_file_processed_once_and_changed_file_again(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    write_rows(drop / "a.csv", 3)
    ex = CsvExtractor(spec(drop / "*.csv"))
    cp = list(ex.batches(None))[-1].position
    assert list(ex.batches(cp)) == []  # same content: nothing to read
    write_rows(drop / "b.csv", 2, start=10)
    new = list(ex.batches(cp))
    assert [b.location for b in new] == [str(drop / "b.csv")]
    cp = new[-1].position
    write_rows(drop / "a.csv", 4)  # a file replaced with new content is read again
    again = list(ex.batches(cp))
    assert [b.location for b in again] == [str(drop / "a.csv")] and len(again[0].frame) == 4


def test_empty_glob_is_quiet_but_missing_file_is_an_error(tmp_path):
    assert list(CsvExtractor(spec(tmp_path / "none" / "*.csv")).batches(None)) == []
    with pytest.raises(SourceError) as err:
        list(CsvExtractor(spec(tmp_path / "missing.csv")).batches(None))
    assert str(err.value).startswith("source 'orders': path ") and "missing.csv: file not found" in str(
        err.value
    )


def test_header_only_file_is_marked_done(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(HEADER)
    batches = list(CsvExtractor(spec(path)).batches(None))
    assert (
        len(batches) == 1 and batches[0].frame.empty and batches[0].position["files"][str(path)]["complete"]
    )


def test_bad_rows_quarantined_with_file_row_and_reason_rest_loads(tmp_path, pg_warehouse):
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,qty,price,ordered_at,paid\n"
        "1,2,9.5,2024-01-01T10:00:00Z,true\n"
        "2,two,9.5,2024-01-01,false\n"  # qty not an integer
        "3,1,cheap,2024-01-02,true\n"  # price not a float
        "4,1,1.0,not a date,yes\n"  # timestamp
        ",1,1.0,2024-01-02,no\n"  # empty primary key
        "5,1,1.0,2024-01-03,maybe\n"  # boolean
        "6,1,1.0,2024-01-03,1,surplus\n"  # ragged: one field too many
        "7,3,2.25,2024-01-04 08:00,0\n"
    )
    s = spec(
        path,
        primary_key=["order_id"],
        columns={
            "order_id": "integer",
            "qty": "integer",
            "price": "float",
            "ordered_at": "timestamp",
            "paid": "boolean",
        },
    )
    stats = ingest(s, pg_warehouse, "run-1")
    assert (stats.processed, stats.inserted, stats.failed) == (8, 2, 6)
    with pg_warehouse.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT order_id, qty, price, paid FROM orders ORDER BY order_id").fetchall()
        q = c.exec_driver_sql(
            "SELECT location, row_number, reason, raw FROM etl_quarantine ORDER BY row_number"
        )
        quarantined = q.fetchall()
    assert rows == [(1, 2, 9.5, True), (7, 3, 2.25, False)]
    reasons = {r[1]: r[2] for r in quarantined}
    assert all(r[0] == str(path) for r in quarantined)
    assert reasons[2] == "column 'qty': 'two' is not a valid integer"
    assert reasons[3] == "column 'price': 'cheap' is not a valid float"
    assert reasons[4] == "column 'ordered_at': 'not a date' is not a valid timestamp"
    assert reasons[5] == "primary key column 'order_id' is empty"
    assert reasons[6] == "column 'paid': 'maybe' is not a valid boolean"
    assert reasons[8] == "line 8: expected 5 fields, saw 6"
    assert '"qty": "two"' in next(r[3] for r in quarantined if r[1] == 2)  # the raw row is kept, nothing lost


def test_inferred_schema_is_pinned_on_first_load(tmp_path, warehouse):
    path = tmp_path / "m.csv"
    path.write_text("sku,count,ratio,seen,when\nA1,3,0.5,true,2024-02-01\nB2,4,1.5,false,2024-02-02\n")
    ingest(spec(path, primary_key=["sku"]), warehouse, "r1")
    assert warehouse.pinned_schema("orders", "orders") == {
        "sku": "string",
        "count": "integer",
        "ratio": "float",
        "seen": "boolean",
        "when": "date",
    }
    path.write_text(
        "sku,count,ratio,seen,when\nC3,many,2.5,true,2024-02-03\n"
    )  # pinned: 'many' is quarantined
    stats = ingest(spec(path, primary_key=["sku"]), warehouse, "r2")
    assert (stats.inserted, stats.failed) == (0, 1)
