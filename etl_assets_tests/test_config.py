import subprocess
import sys

import pytest

from etl_assets.config import ConfigError
from etl_assets.config_load import load_sources

from .conftest import REPO


def test_shipped_sources_file_is_valid():
    specs = load_sources(REPO / "sources.yaml")
    assert {n: s.kind for n, s in specs.items()} == {
        "orders": "csv",
        "customers": "api",
        "events": "api",
        "releases": "rss",
    }
    # two APIs with different pagination styles
    assert {specs["customers"].pagination.type, specs["events"].pagination.type} == {"page", "cursor"}
    assert specs["orders"].path.startswith(str(REPO))  # relative to the sources file


def test_bad_file_names_source_key_path_and_expectation(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "orders:\n  kind: csv\n  path: x.csv\n  primary_keys: [id]\n"
        "api1:\n  kind: api\n  url: ftp://host/x\n  pagination: {type: pages}\n"
        "api2:\n  kind: api\n  url: http://h/x\n  pagination: {type: page, size: -1}\n  columns: {a: strin}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_sources(path)
    lines = str(err.value).splitlines()
    assert any("source 'orders'" in ln and "'primary_keys'" in ln and "unknown key" in ln for ln in lines)
    assert any("source 'api1'" in ln and "'url'" in ln and "http(s)" in ln for ln in lines)
    assert any("source 'api1'" in ln and "'pagination'" in ln and "'cursor'" in ln for ln in lines)
    assert any("source 'api2'" in ln and "'pagination.size'" in ln and "greater than 0" in ln for ln in lines)
    assert any("source 'api2'" in ln and "'columns.a'" in ln and "'timestamp'" in ln for ln in lines)
    assert all(ln.startswith(str(path)) for ln in lines)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("Orders:\n  kind: csv\n  path: x\n", "snake_case"),
        ("orders:\n  path: x\n", "key 'kind': required"),
        ("orders: [1, 2]\n", "expected a mapping"),
        ("- a\n- b\n", "expected a mapping of source name"),
        (
            "orders:\n  kind: csv\n  path: x\n  columns: {id: integer}\n  primary_key: [order_id]\n",
            "primary_key",
        ),
        ("orders:\n  kind: csv\n  path: x\n  schedule: every hour\n", "cron"),
        ("e:\n  kind: api\n  url: ${NOT_SET_ANYWHERE_X}/x\n", "NOT_SET_ANYWHERE_X is not set"),
        ("orders: {kind: csv, path: [\n", "not valid YAML"),
        (
            "orders:\n  kind: csv\n  path: x\n  path: y\n",
            "s.yaml:4: source 'orders': key 'path' is given twice",
        ),
        (
            "orders:\n  kind: csv\n  path: x\norders:\n  kind: csv\n  path: y\n",
            "s.yaml:4: source 'orders' is defined twice",
        ),
        ("orders:\n  kind: csv\n  path: x\n  encoding: klingon\n", "unknown text encoding 'klingon'"),
        ("orders:\n  kind: csv\n  path: x\n  schedule: 61 25 * * mon\n", "minute 61 is out of range 0-59"),
        (
            "orders:\n  kind: csv\n  path: x\n  columns: {id: integer}\n  column_map: {ID: idd}\n",
            "column_map values",
        ),
        (
            "orders:\n  kind: csv\n  path: x\n  columns: {id: integer}\n  drift: {required: [x]}\n",
            "drift.required ['x']",
        ),
        ("orders:\n  kind: csv\n  path: x\n  table: " + "t" * 64 + "\n", "set `table:` to a shorter name"),
    ],
)
def test_each_mistake_is_refused_with_a_clear_line(tmp_path, text, needle):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_sources(path)
    assert needle in str(err.value)


def test_env_default_and_value_in_url(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("e:\n  kind: api\n  url: ${BASE_X:-http://127.0.0.1:1}/items\n")
    assert load_sources(path)["e"].url == "http://127.0.0.1:1/items"
    monkeypatch.setenv("BASE_X", "https://api.example.com")
    assert load_sources(path)["e"].url == "https://api.example.com/items"


def test_rss_defaults_to_feed_columns_keyed_by_entry_id(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("f:\n  kind: rss\n  url: feed.xml\n")
    spec = load_sources(path)["f"]
    assert spec.primary_key == ["id"]
    assert list(spec.columns) == ["id", "title", "link", "summary", "published", "updated", "author", "tags"]
    assert spec.url == str(tmp_path / "feed.xml")


def test_validate_cli_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "validate", str(REPO / "sources.yaml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "4 source(s) valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("orders:\n  kind: csv\n")
    res = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "validate", str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 1
    assert f"{bad}: source 'orders': key 'path': Field required" in res.stderr


def test_lenient_load_returns_the_valid_specs_and_each_bad_source_s_lines(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "a:\n  kind: csv\n  path: x\nb:\n  kind: csv\n  path: x\n  encoding: klingon\n  chunk_rows: 0\n"
        "c:\n  kind: api\n  url: http://h/x\n  headers: {X-Key: '${NOT_SET_ANYWHERE_X}'}\n"
    )
    specs, problems = load_sources(path, lenient=True)
    assert sorted(specs) == ["a", "c"]  # an unset header variable may be set where the run executes
    assert list(problems) == ["b"] and len(problems["b"]) == 2
    assert all(ln.startswith(f"{path}: source 'b': key '") for ln in problems["b"])
    with pytest.raises(ConfigError) as err:  # strict: every problem
        load_sources(path)
    assert len(str(err.value).splitlines()) == 2
    with pytest.raises(ConfigError) as err:  # what validate asks: the header's too
        load_sources(path, header_env=True)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and lines[2] == (
        f"{path}: source 'c': headers.X-Key uses ${{NOT_SET_ANYWHERE_X}} but "
        "NOT_SET_ANYWHERE_X is not set; export it or write "
        "${NOT_SET_ANYWHERE_X:-default}"
    )
