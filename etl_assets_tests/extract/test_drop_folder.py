"""The CSV drop folder is untrusted: links are not followed by default, never out of the folder, never in a loop;
only regular files are read; the walk's root is the real folder fixed when sources.yaml was loaded."""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl_assets.config import CsvSource
from etl_assets.errors import SourceError
from etl_assets.extract.csv import CsvExtractor
from etl_assets.pipeline import ingest

SECRET = "hunter2-secret"
HEADER = "order_id,product\n"
LOG = "etl_assets.extract.csv"


def write_orders(path: Path, *ids: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{i},product {i}\n" for i in ids), encoding="utf-8")
    return path


def write_secret(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"DB_PASSWORD={SECRET}\nAPI_TOKEN={SECRET}-2\n", encoding="utf-8")
    return path


def bounded(fn, seconds: float = 10.0):
    """fn() in a daemon thread: a walk that loops or a read that blocks fails the test instead of hanging it."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            out["error"] = exc

    started = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (a loop, or a blocking read)"
    if "error" in out:
        raise out["error"]
    return out["value"], time.monotonic() - started


def source(make_sources, path: str, **kw):
    spec = {"kind": "csv", "path": path, **kw}
    return make_sources({"orders": spec})[1]["orders"]


def every_value(warehouse) -> str:
    """Every row of every table of the warehouse, as one text."""
    texts = []
    with warehouse.engine.connect() as conn:
        for table in warehouse.row_counts():
            rows = conn.execute(sa.text(f"SELECT * FROM {warehouse.q(table)}")).fetchall()
            texts.append(f"{table}: {[tuple(r) for r in rows]!r}")
    return "\n".join(texts)


def loaded_ids(warehouse, table: str = "orders") -> list[str]:
    with warehouse.engine.connect() as conn:
        return [
            str(r[0]) for r in conn.execute(sa.text(f"SELECT order_id FROM {warehouse.q(table)} ORDER BY 1"))
        ]


def warnings_of(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and getattr(r, "event", None) == event]


# -- a link to a secret outside the folder ----------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow_symlinks"])
@pytest.mark.parametrize("absolute", [False, True], ids=["relative_link", "absolute_link"])
def test_link_to_a_secret_outside_is_skipped_and_lands_in_no_table(
    tmp_path, make_sources, warehouse, caplog, follow, absolute
):
    caplog.set_level(logging.INFO, logger="etl_assets")
    secret = write_secret(tmp_path / "secret.env")
    write_orders(tmp_path / "drop" / "orders_1.csv", 1, 2, 3)
    link = tmp_path / "drop" / "orders_2.csv"
    link.symlink_to(secret if absolute else Path("..") / "secret.env")
    spec = source(make_sources, "drop/orders_*.csv", follow_symlinks=follow)

    stats = ingest(spec, warehouse, "run-1")

    assert (stats.processed, stats.inserted, stats.failed) == (3, 3, 0)
    assert loaded_ids(warehouse) == ["1", "2", "3"]
    assert warehouse.row_count("etl_quarantine") == 0
    counts = warehouse.row_counts()
    assert {"orders", "etl_runs", "etl_checkpoints"} <= set(counts)
    text = every_value(warehouse)
    assert SECRET not in text and "DB_PASSWORD" not in text
    assert SECRET not in caplog.text
    event = "symlink_refused" if follow else "symlink_skipped"
    [warn] = warnings_of(caplog, event)
    assert warn.path == str(link) and warn.target == str(secret if absolute else Path("..") / "secret.env")
    message = warn.getMessage()
    assert message.startswith(f"source orders: skipped {link}: ")
    if follow:
        assert f"links to {secret}, outside the drop folder {tmp_path / 'drop'}" in message
    else:
        assert "is a symbolic link" in message
        assert "set `follow_symlinks: true` for this source, or replace the link with the file" in message
    # the checkpoint names only the real file, under the real root
    assert list(warehouse.checkpoint("orders")["files"]) == [str(tmp_path / "drop" / "orders_1.csv")]


# -- a link to a file inside the folder -------------------------------------------------------------------------


def test_link_inside_the_folder_skipped_by_default(tmp_path, make_sources, warehouse, caplog):
    caplog.set_level(logging.INFO, logger="etl_assets")
    write_orders(tmp_path / "drop" / "a.csv", 1, 2)
    (tmp_path / "drop" / "b.csv").symlink_to("a.csv")
    spec = source(make_sources, "drop/*.csv")
    stats = ingest(spec, warehouse, "r1")
    assert (stats.processed, warehouse.row_count("orders")) == (2, 2)
    [warn] = warnings_of(caplog, "symlink_skipped")
    assert warn.path == str(tmp_path / "drop" / "b.csv") and warn.target == "a.csv"


def test_link_inside_the_folder_followed_is_loaded_once(tmp_path, make_sources, warehouse, caplog):
    caplog.set_level(logging.INFO, logger="etl_assets")
    write_orders(tmp_path / "drop" / "b.csv", 1, 2)
    (tmp_path / "drop" / "a.csv").symlink_to("b.csv")  # sorts first: the file is read under this name
    write_orders(tmp_path / "drop" / "c.csv", 3)
    os.link(tmp_path / "drop" / "c.csv", tmp_path / "drop" / "d.csv")  # a hard link is the same file too
    spec = source(make_sources, "drop/*.csv", follow_symlinks=True)
    assert CsvExtractor(spec).files() == [tmp_path / "drop" / "a.csv", tmp_path / "drop" / "c.csv"]
    stats = ingest(spec, warehouse, "r1")
    # no primary key: a row's identity is its location and row number, so a second read would add rows
    assert (stats.processed, stats.inserted, warehouse.row_count("orders")) == (3, 3, 3)
    assert loaded_ids(warehouse) == ["1", "2", "3"]
    assert warnings_of(caplog, "symlink_skipped") == [] and warnings_of(caplog, "symlink_refused") == []
    dupes = [r for r in caplog.records if getattr(r, "event", None) == "duplicate_file_skipped"]
    assert sorted({r.path for r in dupes}) == [
        str(tmp_path / "drop" / "b.csv"),
        str(tmp_path / "drop" / "d.csv"),
    ]


def test_followed_folder_link_inside_walked_once(tmp_path, make_sources, warehouse):
    write_orders(tmp_path / "drop" / "2024" / "x.csv", 1, 2)
    (tmp_path / "drop" / "current").symlink_to("2024", target_is_directory=True)
    spec = source(make_sources, "drop/**/*.csv", follow_symlinks=True)
    assert CsvExtractor(spec).files() == [tmp_path / "drop" / "2024" / "x.csv"]
    ingest(spec, warehouse, "r1")
    assert warehouse.row_count("orders") == 2


# -- follow_symlinks still refuses what is outside the root -----------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow_symlinks"])
def test_folder_link_to_outside_not_walked(tmp_path, make_sources, warehouse, caplog, follow):
    caplog.set_level(logging.INFO, logger="etl_assets")
    outside = tmp_path / "outside"
    write_orders(outside / "leak.csv", 99).write_text(f"order_id,product\n99,{SECRET}\n")
    write_orders(tmp_path / "drop" / "ok.csv", 1)
    link = tmp_path / "drop" / "sub"
    link.symlink_to(outside, target_is_directory=True)
    spec = source(make_sources, "drop/**/*.csv", follow_symlinks=follow)
    stats = ingest(spec, warehouse, "r1")
    assert (stats.processed, loaded_ids(warehouse)) == (1, ["1"])
    assert SECRET not in every_value(warehouse)
    [warn] = warnings_of(caplog, "symlink_refused" if follow else "symlink_skipped")
    assert warn.path == str(link) and warn.target == str(outside)
    if follow:
        assert f"links to {outside}, outside the drop folder {tmp_path / 'drop'}" in warn.getMessage()
    else:
        assert "is a symbolic link to a folder" in warn.getMessage()


def test_follow_refuses_a_file_reached_through_a_parent_link(tmp_path):
    """A link up and out again (`drop/up -> ..`) is outside the root, whichever way it is written."""
    write_secret(tmp_path / "secret.env")
    write_orders(tmp_path / "drop" / "a.csv", 1)
    (tmp_path / "drop" / "up").symlink_to("..", target_is_directory=True)
    (tmp_path / "drop" / "deep.csv").symlink_to("up/drop/../secret.env")
    spec = CsvSource(
        name="orders", kind="csv", path=str(tmp_path / "drop" / "**" / "*"), follow_symlinks=True
    )
    assert CsvExtractor(spec).files() == [tmp_path / "drop" / "a.csv"]


# -- loops ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow_symlinks"])
def test_directory_loop_loads_the_file_once_quickly(tmp_path, make_sources, warehouse, caplog, follow):
    caplog.set_level(logging.INFO, logger="etl_assets")
    write_orders(tmp_path / "d" / "x.csv", 7)
    (tmp_path / "d" / "self").symlink_to(Path("..") / "d", target_is_directory=True)
    write_orders(tmp_path / "d" / "sub" / "y.csv", 8)
    (tmp_path / "d" / "sub" / "up").symlink_to(
        "..", target_is_directory=True
    )  # a second loop, one level down
    (tmp_path / "d" / "sub" / "again").symlink_to(tmp_path / "d" / "sub", target_is_directory=True)
    spec = source(make_sources, "d/**/*.csv", follow_symlinks=follow)

    stats, seconds = bounded(lambda: ingest(spec, warehouse, "r1"))

    assert seconds < 10
    assert (stats.processed, stats.inserted) == (2, 2)
    assert loaded_ids(warehouse) == ["7", "8"]
    assert sorted(warehouse.checkpoint("orders")["files"]) == [
        str(tmp_path / "d" / "sub" / "y.csv"),
        str(tmp_path / "d" / "x.csv"),
    ]
    skipped = warnings_of(caplog, "symlink_skipped")
    if follow:
        assert skipped == []
    else:  # one line per link to a folder
        assert sorted(r.path for r in skipped) == sorted(
            str(tmp_path / "d" / p) for p in ("self", "sub/up", "sub/again")
        )


def test_many_routes_to_the_same_folders_each_walked_once(tmp_path):
    """Two links to the next folder at each of 12 levels: 4096 paths to the bottom, one walk of 12 folders."""
    level = tmp_path / "d"
    write_orders(level / "top.csv", 1)
    for i in range(12):
        nxt = level / f"l{i}"
        nxt.mkdir()
        (level / f"a{i}").symlink_to(nxt.name, target_is_directory=True)
        (level / f"b{i}").symlink_to(nxt.name, target_is_directory=True)
        level = nxt
    write_orders(level / "bottom.csv", 2)
    spec = CsvSource(
        name="orders", kind="csv", path=str(tmp_path / "d" / "**" / "*.csv"), follow_symlinks=True
    )
    files, seconds = bounded(lambda: CsvExtractor(spec).files())
    assert seconds < 10 and len(files) == 2
    assert files[1] == tmp_path / "d" / "top.csv" and files[0].name == "bottom.csv"


# -- only regular files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow_symlinks"])
def test_fifo_matching_the_glob_is_skipped_without_blocking(
    tmp_path, make_sources, warehouse, caplog, follow
):
    caplog.set_level(logging.INFO, logger="etl_assets")
    write_orders(tmp_path / "drop" / "orders_1.csv", 1, 2)
    fifo = tmp_path / "drop" / "orders_2.csv"
    os.mkfifo(fifo)
    spec = source(make_sources, "drop/orders_*.csv", follow_symlinks=follow)
    try:
        stats, seconds = bounded(lambda: ingest(spec, warehouse, "r1"))
    finally:  # should a reader be blocked on the FIFO, a writer lets it go
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if _has_reader(fifo) else None
        if fd is not None:
            os.close(fd)
    assert seconds < 10 and (stats.processed, loaded_ids(warehouse)) == (2, ["1", "2"])
    [warn] = warnings_of(caplog, "special_file_skipped")
    assert warn.path == str(fifo)
    assert "is not a regular file (a FIFO (named pipe)); only regular files are read" in warn.getMessage()


def _has_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        return True
    except OSError:  # ENXIO: nobody has it open for reading
        return False


def test_followed_link_to_a_fifo_is_skipped(tmp_path, caplog):
    (tmp_path / "drop").mkdir()
    os.mkfifo(tmp_path / "drop" / "pipe")
    (tmp_path / "drop" / "x.csv").symlink_to("pipe")
    spec = CsvSource(name="orders", kind="csv", path=str(tmp_path / "drop" / "*.csv"), follow_symlinks=True)
    files, _ = bounded(lambda: CsvExtractor(spec).files())
    assert files == []
    assert [r.path for r in warnings_of(caplog, "special_file_skipped")] == [str(tmp_path / "drop" / "x.csv")]


# -- a path naming one file -------------------------------------------------------------------------------------


def test_named_file_that_is_a_link_fails_in_one_line(tmp_path, make_sources, warehouse):
    write_orders(tmp_path / "exports" / "orders.csv", 1)
    link = tmp_path / "orders.csv"
    link.symlink_to(Path("exports") / "orders.csv")
    spec = source(make_sources, "orders.csv")
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        f"source 'orders': path {link}: is a symbolic link (to exports/orders.csv); links are not "
        "followed; fix: set `follow_symlinks: true` for this source, or replace the link with the file"
    )
    assert warehouse.row_count("orders") == 0
    # followed, it is read: its target is inside the link's folder
    stats = ingest(source(make_sources, "orders.csv", follow_symlinks=True), warehouse, "r2")
    assert (stats.processed, loaded_ids(warehouse)) == (1, ["1"])


def test_named_file_link_out_of_its_folder_refused_even_when_followed(tmp_path, make_sources):
    write_secret(tmp_path / "secret.env")
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "orders.csv").symlink_to(Path("..") / "secret.env")
    spec = source(make_sources, "drop/orders.csv", follow_symlinks=True)
    with pytest.raises(SourceError, match=r"outside the drop folder") as err:
        CsvExtractor(spec).files()
    assert "\n" not in str(err.value) and SECRET not in str(err.value)


def test_named_file_missing_or_special(tmp_path, make_sources):
    with pytest.raises(SourceError, match=r"missing\.csv: file not found; fix: check `path`"):
        CsvExtractor(source(make_sources, "missing.csv")).files()
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(SourceError, match=r"pipe\.csv: is not a regular file \(a FIFO \(named pipe\)\)"):
        bounded(lambda: CsvExtractor(source(make_sources, "pipe.csv")).files())


# -- the root is the real folder fixed when sources.yaml was loaded ---------------------------------------------


def test_root_fixed_to_its_real_path_when_loaded(tmp_path, make_sources, warehouse):
    write_orders(tmp_path / "real1" / "a.csv", 1)
    write_secret(tmp_path / "real2" / "leak.csv")
    (tmp_path / "drop").symlink_to("real1", target_is_directory=True)
    spec = source(make_sources, "drop/*.csv")
    assert spec.path == str(tmp_path / "real1" / "*.csv") and spec.glob_root == str(tmp_path / "real1")
    # the configured link now points elsewhere: the walk stays at the real folder
    tmp = tmp_path / "drop.new"
    tmp.symlink_to("real2", target_is_directory=True)
    os.replace(tmp, tmp_path / "drop")
    stats = ingest(spec, warehouse, "r1")
    assert (stats.processed, loaded_ids(warehouse)) == (1, ["1"])
    assert SECRET not in every_value(warehouse)


def test_root_swapped_for_a_link_after_loading_is_refused(tmp_path, make_sources, warehouse):
    write_orders(tmp_path / "drop" / "a.csv", 1)
    write_secret(tmp_path / "outside" / "a.csv")
    spec = source(make_sources, "drop/*.csv")
    assert spec.glob_root == str(tmp_path / "drop")
    os.rename(tmp_path / "drop", tmp_path / "drop.orig")
    (tmp_path / "drop").symlink_to("outside", target_is_directory=True)
    with pytest.raises(SourceError) as err:
        ingest(spec, warehouse, "r1")
    assert str(err.value).startswith(
        f"source 'orders': folder {tmp_path / 'drop'}: is (now) reached through a "
        f"symbolic link, to {tmp_path / 'outside'}"
    )
    assert SECRET not in every_value(warehouse)
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM etl_runs")).scalar() == "failure"


# -- the folder changing between the walk and the read -----------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True], ids=["default", "follow_symlinks"])
def test_file_swapped_for_a_link_after_the_walk_is_not_read(tmp_path, caplog, follow):
    caplog.set_level(logging.INFO, logger="etl_assets")
    write_secret(tmp_path / "secret.env")
    a = write_orders(tmp_path / "drop" / "a.csv", 1)
    b = write_orders(tmp_path / "drop" / "b.csv", 2)
    c = write_orders(tmp_path / "drop" / "c.csv", 3)
    ex = CsvExtractor(
        CsvSource(name="orders", kind="csv", path=str(tmp_path / "drop" / "*.csv"), follow_symlinks=follow)
    )
    listed = ex.files()
    assert listed == [a, b, c]
    b.unlink()
    b.symlink_to(tmp_path / "secret.env")
    c.unlink()
    os.mkfifo(c)
    ex.files = lambda: listed  # type: ignore[method-assign]  # the walk happened before the swap
    batches, _ = bounded(lambda: list(ex.batches(None)))
    assert [bt.location for bt in batches] == [str(a)]
    assert SECRET not in "".join(bt.frame.to_csv() for bt in batches)
    assert [r.path for r in warnings_of(caplog, "symlink_refused" if follow else "symlink_skipped")] == [
        str(b)
    ]
    assert [r.path for r in warnings_of(caplog, "special_file_skipped")] == [str(c)]


# -- without links, the walk finds what glob finds --------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "*.csv",
        "**/*.csv",
        "**",
        "*/*.csv",
        "a/**/b/*.csv",
        "[ab]*/*.csv",
        ".hidden/*.csv",
        "**/.*.csv",
        "a/**",
        "a/*/**/*.csv",
        "**/**/*.csv",
        "?.csv",
        "a/b/c.csv",
    ],
)
def test_walk_matches_glob_without_links(tmp_path, pattern):
    for rel in [
        "x.csv",
        "y.txt",
        ".h.csv",
        "a/1.csv",
        "a/b/2.csv",
        "a/b/c.csv",
        "a/z/b/3.csv",
        "a/.h/b/4.csv",
        "ab/5.csv",
        "c/d/e/6.csv",
        ".hidden/7.csv",
        ".hidden/b/8.csv",
        "a/.9.csv",
    ]:
        write_orders(tmp_path / rel, 1)
    full = str(tmp_path / pattern)
    # a set: glob gives a file once per way `**/**` can reach it; the walk reads it once
    expected = sorted({Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file()})
    if glob.has_magic(pattern):
        assert CsvExtractor(CsvSource(name="t", kind="csv", path=full)).files() == expected
    else:
        assert CsvExtractor(CsvSource(name="t", kind="csv", path=full)).files() == [Path(full)] == expected
