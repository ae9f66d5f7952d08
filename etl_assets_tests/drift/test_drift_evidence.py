"""The structural and value evidence of a rename (drift/structure.py, drift/profiles.py, drift/names.py), one
class of header change per test, with headers and values written here (not the accuracy corpus)."""

from __future__ import annotations

import random

from etl_assets.drift import ColumnProfile, detect_drift
from etl_assets.drift.names import NameScorer, abbreviation_score
from etl_assets.drift.profiles import incompatible, value_match
from etl_assets.drift.structure import position_evidence, sibling_counts


def strings(cols: list[str]) -> dict[str, str]:
    return {c: "string" for c in cols}


def decision(report, expected: str) -> tuple[str | None, str]:
    m = next(m for m in report.mappings if m.expected == expected)
    return m.observed, m.decision


# --- names: containment and short codes -----------------------------------------------------------------


def test_containment_either_way_scores_as_a_probable_rename():
    scorer = NameScorer(["Region", "Region or territory", "Phone", "Customer's Phone", "price", "libprice"])
    assert 0.7 <= scorer.similarity("Region", "Region or territory") < 0.85
    assert 0.7 <= scorer.similarity("Customer's Phone", "Phone") < 0.85  # the possessive is not a word
    assert scorer.similarity("libprice", "price") >= 0.7  # one run-together word inside the other
    # a sentence around a name is not a qualifier
    assert (
        NameScorer(["amount", "amount drop table orders now"]).similarity(
            "amount", "amount drop table orders now"
        )
        < 0.7
    )


def test_short_codes_are_read_off_the_letters():
    assert abbreviation_score("tmp", ["temperature"]) >= 0.78
    assert abbreviation_score("wspd", ["wind", "speed"]) >= 0.78
    assert abbreviation_score("prcp", ["precipitation"]) >= 0.78
    assert abbreviation_score("ws", ["wind", "speed"]) >= 0.78
    assert abbreviation_score("id", ["identity"]) == 0.0  # two letters of one word say nothing
    assert abbreviation_score("xyz", ["temperature"]) == 0.0
    assert abbreviation_score("tmp", ["wind", "speed"]) == 0.0


def test_a_plural_alone_is_never_enough_to_apply():
    # "trips" (a count) and "trip" (an identifier): the names alone cannot tell them apart
    report = detect_drift(strings(["station", "trips"]), ["station", "trip"])
    assert decision(report, "trips") == ("trip", "suggested")


# --- structure: position and siblings ---------------------------------------------------------------------


def test_position_evidence_needs_the_same_gap_on_both_sides():
    # expected a X b ; observed a Y b: X and Y alone between the same neighbours
    pos = position_evidence(3, 3, [(0, 0), (2, 2)], [1], [1])
    assert pos == {(1, 1): 1.0}
    # a gap of two on one side and one on the other says nothing
    assert position_evidence(4, 3, [(0, 0), (3, 2)], [1, 2], [1]) == {}


def test_a_reorder_is_never_read_as_renames():
    cols = ["id", "name", "city", "zip", "phone"]
    report = detect_drift(strings(cols), ["phone", "zip", "id", "city", "name"])
    assert all(m.decision == "exact" for m in report.mappings)
    assert report.added == [] and report.removed == []


def test_a_column_renamed_in_place_is_suggested_even_with_no_shared_word():
    report = detect_drift(
        strings(["trip_id", "usertype", "birth_year"]), ["trip_id", "rider_category", "birth_year"]
    )
    assert decision(report, "usertype") == ("rider_category", "suggested")
    # the same new column at the end, away from the old one's place: nothing backs it
    report = detect_drift(
        strings(["trip_id", "usertype", "birth_year"]), ["trip_id", "birth_year", "rider_category"]
    )
    assert decision(report, "usertype") == (None, "unmapped")


def test_a_change_shared_by_siblings_is_learned_from_the_header_pair():
    langs = ["Language", "Database", "Platform", "WebFrame"]
    old = ["Respondent", *[f"{x}DesireNextYear" for x in langs]]
    new = ["Respondent", *[f"{x}WantToWorkWith" for x in langs]]
    report = detect_drift(strings(old), new)
    for x in langs:
        assert decision(report, f"{x}DesireNextYear") == (f"{x}WantToWorkWith", "auto_mapped")
    counts = sibling_counts(
        [["language", "desir"], ["databas", "desir"]], [["language", "want"], ["databas", "want"]]
    )
    assert counts[(0, 0)] == 2 and counts[(1, 1)] == 2 and (0, 1) not in counts


def test_one_lone_change_is_not_a_sibling_family():
    assert sibling_counts([["language", "desir"]], [["language", "want"]]) == {}


# --- values ---------------------------------------------------------------------------------------------


def test_a_count_is_not_an_identifier_whatever_the_names_share():
    rng = random.Random(7)
    counts = [str(rng.randint(0, 4)) for _ in range(200)]
    ids = [str(100000 + i) for i in range(200)]
    prev = {"trips": ColumnProfile.of(counts)}
    assert incompatible(prev["trips"], ColumnProfile.of(ids))
    report = detect_drift(
        {"station": "string", "trips": "integer"},
        ["station", "trip"],
        {"station": ["a"] * 200, "trip": ids},
        previous_profiles=prev,
    )
    m = next(m for m in report.mappings if m.expected == "trips")
    assert not m.applied and m.evidence.get("incompatible") == 1.0


def test_matching_values_raise_a_weak_name_to_a_suggestion_never_to_auto():
    rng = random.Random(11)
    old = [f"{rng.gauss(20, 5):.1f}" for _ in range(200)]
    new = [f"{rng.gauss(20, 5):.1f}" for _ in range(200)]  # other rows of the same distribution
    prev = {"x3": ColumnProfile.of(old)}
    assert value_match(prev["x3"], ColumnProfile.of(new)) >= 0.8
    assert value_match(prev["x3"], ColumnProfile.of([f"{rng.gauss(60, 5):.1f}" for _ in range(200)])) < 0.5
    report = detect_drift(
        {"id": "integer", "x3": "float"},
        ["id", "temperature_c"],
        {"id": [str(i) for i in range(200)], "temperature_c": new},
        previous_profiles=prev,
    )
    assert decision(report, "x3") == ("temperature_c", "suggested")


def test_values_that_do_not_confirm_a_name_match_keep_it_a_suggestion():
    rng = random.Random(3)
    prev = {"wage": ColumnProfile.of([f"{rng.uniform(1, 40):.2f}" for _ in range(200)])}
    other = [str(rng.choice([0, 1, 2])) for _ in range(200)]
    report = detect_drift(
        {"id": "integer", "wage": "float"},
        ["id", "wages"],
        {"id": [str(i) for i in range(200)], "wages": other},
        previous_profiles=prev,
    )
    assert not next(m for m in report.mappings if m.expected == "wage").applied


def test_evidence_per_signal_is_shown_in_the_mapping_table():
    report = detect_drift(
        strings(["trip_id", "usertype", "birth_year"]), ["trip_id", "rider_category", "birth_year"]
    )
    row = next(line for line in report.markdown().splitlines() if line.startswith("| usertype "))
    assert "name=" in row and "position=1.000" in row
