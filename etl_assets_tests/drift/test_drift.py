"""Schema-drift detection (etl_assets.drift): real function, real headers, no mocks."""

from __future__ import annotations

import importlib.util
import json
from datetime import date, datetime
from pathlib import Path

import pytest

from etl_assets.drift import ColumnProfile, DriftReport, detect_drift, normalize_name
from etl_assets.types import COLUMN_TYPES, infer_type


def drifted(report: DriftReport) -> bool:
    """Anything differs beyond spelling the config or the user has already settled (exact-after-normalisation and
    explicit mappings are not drift), read from the report's public fields."""
    return bool(
        report.added
        or report.removed
        or report.type_changes
        or report.conflicts
        or any(m.decision in ("auto_mapped", "swapped") for m in report.mappings)
    )


REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared/corpus/drift_dev_cases.json"

# Real headers (see benchmarks/drift_cases_extra.json for sources)
CITI_2020 = [
    "tripduration",
    "starttime",
    "stoptime",
    "start station id",
    "start station name",
    "start station latitude",
    "start station longitude",
    "end station id",
    "end station name",
    "end station latitude",
    "end station longitude",
    "bikeid",
    "usertype",
    "birth year",
    "gender",
]
CITI_2021 = [
    "ride_id",
    "rideable_type",
    "started_at",
    "ended_at",
    "start_station_name",
    "start_station_id",
    "end_station_name",
    "end_station_id",
    "start_lat",
    "start_lng",
    "end_lat",
    "end_lng",
    "member_casual",
]
JHU_0321 = [
    "Province/State",
    "Country/Region",
    "Last Update",
    "Confirmed",
    "Deaths",
    "Recovered",
    "Latitude",
    "Longitude",
]
JHU_0322 = [
    "FIPS",
    "Admin2",
    "Province_State",
    "Country_Region",
    "Last_Update",
    "Lat",
    "Long_",
    "Confirmed",
    "Deaths",
    "Recovered",
    "Active",
    "Combined_Key",
]
TLC_2009 = [
    "vendor_name",
    "Trip_Pickup_DateTime",
    "Trip_Dropoff_DateTime",
    "Passenger_Count",
    "Trip_Distance",
    "Start_Lon",
    "Start_Lat",
    "Rate_Code",
    "store_and_forward",
    "End_Lon",
    "End_Lat",
    "Payment_Type",
    "Fare_Amt",
    "surcharge",
    "mta_tax",
    "Tip_Amt",
    "Tolls_Amt",
    "Total_Amt",
]
TLC_2010 = [
    "vendor_id",
    "pickup_datetime",
    "dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "pickup_longitude",
    "pickup_latitude",
    "rate_code",
    "store_and_fwd_flag",
    "dropoff_longitude",
    "dropoff_latitude",
    "payment_type",
    "fare_amount",
    "surcharge",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "total_amount",
]
TLC_2015 = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "pickup_longitude",
    "pickup_latitude",
    "RateCodeID",
    "store_and_fwd_flag",
    "dropoff_longitude",
    "dropoff_latitude",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
]


def strings(cols: list[str]) -> dict[str, str]:
    return {c: "string" for c in cols}


def mapping_of(report: DriftReport, expected: str):
    return next(m for m in report.mappings if m.expected == expected)


# --- names ------------------------------------------------------------------------------------------


def test_normalize_name_ignores_case_whitespace_punctuation_and_separators():
    assert (
        normalize_name("Country/Region")
        == normalize_name("Country_Region")
        == normalize_name(" country region ")
    )
    assert normalize_name("Country/Region") == "country_region"
    assert normalize_name("VendorID") == normalize_name("vendor_id")
    assert normalize_name("PULocationID") == "pu_location_id"
    assert normalize_name("Long_") == "long"
    assert normalize_name("Case-Fatality_Ratio") == normalize_name("Case_Fatality_Ratio")
    # punctuation-only headers stay distinct from each other
    assert normalize_name("#") != normalize_name("%")


def test_exact_after_normalisation():
    report = detect_drift(strings(JHU_0321[:3]), [" province state ", "COUNTRY_REGION", "Last_Update"])
    assert [m.decision for m in report.mappings] == ["exact", "exact", "exact"]
    assert all(m.confidence == 1.0 for m in report.mappings)
    assert report.rename_map() == {
        " province state ": "Province/State",
        "COUNTRY_REGION": "Country/Region",
        "Last_Update": "Last Update",
    }
    assert report.added == [] and report.removed == [] and not drifted(report)


def test_verbatim_spelling_wins_exact_match_over_another_that_normalises_equal():
    report = detect_drift({"amount": "float"}, ["Amount", "amount"])
    assert mapping_of(report, "amount").observed == "amount"
    assert report.added == ["Amount"]


# --- documented renames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old_header,new_header,old,new,decision",
    [
        # Citi Bike, February 2021
        (CITI_2020, CITI_2021, "starttime", "started_at", "auto_mapped"),
        (CITI_2020, CITI_2021, "stoptime", "ended_at", "auto_mapped"),
        (CITI_2020, CITI_2021, "start station id", "start_station_id", "exact"),
        (CITI_2020, CITI_2021, "end station name", "end_station_name", "exact"),
        # JHU CSSE daily reports, 2020-03-22
        (JHU_0321, JHU_0322, "Country/Region", "Country_Region", "exact"),
        (JHU_0321, JHU_0322, "Province/State", "Province_State", "exact"),
        (JHU_0321, JHU_0322, "Last Update", "Last_Update", "exact"),
        (JHU_0321, JHU_0322, "Latitude", "Lat", "auto_mapped"),
        (JHU_0321, JHU_0322, "Longitude", "Long_", "auto_mapped"),
        # NYC TLC yellow, 2009 -> 2010 and 2014 -> 2015
        (TLC_2009, TLC_2010, "Trip_Pickup_DateTime", "pickup_datetime", "auto_mapped"),
        (TLC_2009, TLC_2010, "Start_Lon", "pickup_longitude", "auto_mapped"),
        (TLC_2009, TLC_2010, "Fare_Amt", "fare_amount", "auto_mapped"),
        (TLC_2010, TLC_2015, "pickup_datetime", "tpep_pickup_datetime", "auto_mapped"),
        (TLC_2010, TLC_2015, "vendor_id", "VendorID", "exact"),
    ],
)
def test_documented_renames_are_applied(old_header, new_header, old, new, decision):
    report = detect_drift(strings(old_header), new_header)
    m = mapping_of(report, old)
    assert (m.observed, m.decision) == (new, decision), m
    assert report.rename_map()[new] == old
    if decision == "auto_mapped":
        assert 0.85 <= m.confidence < 1.0
        assert m.evidence["name"] > 0 and m.evidence["margin"] >= 1.0
        assert drifted(report)


def test_citibike_2021_dropped_and_added_columns():
    report = detect_drift(strings(CITI_2020), CITI_2021)
    for gone in ("tripduration", "bikeid", "birth year", "gender"):
        assert gone in report.removed
        assert not mapping_of(report, gone).applied
    assert "ride_id" in report.added and "rideable_type" in report.added
    # semantic rename (values changed too): never applied on the name alone
    assert not mapping_of(report, "usertype").applied
    assert "member_casual" not in report.rename_map()


def test_trap_surcharge_is_not_auto_mapped_to_improvement_surcharge():
    report = detect_drift(strings(TLC_2010), TLC_2015)
    m = mapping_of(report, "surcharge")
    assert m.decision in ("suggested", "unmapped")
    assert "improvement_surcharge" not in report.rename_map()
    assert report.missing(["surcharge"]) == [m]


def test_trap_coordinates_are_not_mapped_to_zone_ids():
    old = TLC_2015[:]
    new = [c for c in TLC_2015 if "itude" not in c] + ["PULocationID", "DOLocationID"]
    report = detect_drift(strings(old), new)
    assert report.rename_map().get("PULocationID") is None
    assert sorted(report.removed) == [
        "dropoff_latitude",
        "dropoff_longitude",
        "pickup_latitude",
        "pickup_longitude",
    ]
    assert report.added == ["PULocationID", "DOLocationID"]


# --- safety ---------------------------------------------------------------------------------------


def test_ambiguous_near_tie_is_only_suggested():
    report = detect_drift({"customer_no": "string"}, ["cust_number", "customer_num"])
    m = mapping_of(report, "customer_no")
    assert m.decision == "suggested"
    assert m.confidence < 0.85  # capped below the auto threshold: the number agrees with the decision
    assert {c for c, _ in m.candidates} == {"cust_number", "customer_num"}
    assert m.candidates[0][1] == m.candidates[1][1]  # a true tie
    assert report.rename_map() == {}
    assert report.removed == ["customer_no"]


def test_two_way_swap_ambiguity_is_not_applied():
    # each expected column fits both observed columns equally well (date/time ~ datetime/timestamp):
    # high name scores, but swapping the pair costs nothing, so nothing may be applied
    report = detect_drift(
        {"pickup_time": "string", "pickup_date": "string"}, ["pickup_datetime", "pickup_timestamp"]
    )
    for m in report.mappings:
        assert m.decision == "suggested"
        assert m.evidence["name"] >= 0.85 and m.evidence["margin"] < 1.0
        assert m.confidence < 0.85
    assert report.rename_map() == {}
    assert detect_drift({"amount": "float"}, ["amount_usd", "amount_eur"]).rename_map() == {}


def test_global_assignment_beats_greedy():
    expected = {"trip_distance": "float", "trip_distance_km": "float"}
    observed = ["trip_dist_km", "distance"]
    report = detect_drift(expected, observed)
    # what a greedy matcher would do, from the same scores: each expected column in turn takes
    # its best still-free candidate
    taken, greedy = set(), {}
    for m in report.mappings:
        best = next(((c, s) for c, s in m.candidates if c not in taken), None)
        if best:
            greedy[m.expected] = best[0]
            taken.add(best[0])
    assert greedy["trip_distance"] == "trip_dist_km"  # greedy steals the km column...
    # ...the global assignment gives it to the column it fits best and suggests the rest
    km = mapping_of(report, "trip_distance_km")
    assert (km.observed, km.decision) == ("trip_dist_km", "auto_mapped")
    plain = mapping_of(report, "trip_distance")
    assert plain.observed == "distance" and plain.decision == "suggested"
    assert report.rename_map() == {"trip_dist_km": "trip_distance_km"}


def test_a_hostile_header_is_only_a_name():
    hostile = 'amount"; DROP TABLE orders; --'
    report = detect_drift({"id": "integer", "amount": "float"}, ["id", hostile])
    m = mapping_of(report, "amount")
    assert not m.applied  # far from "amount" once its other words are counted
    assert report.added == [hostile]  # kept verbatim, not cleaned into something else
    assert normalize_name(hostile) == "amount_drop_table_orders"
    payload = json.loads(json.dumps(report.to_json("orders")))
    assert payload["added"] == [hostile]
    assert f"| — | {hostile} |  | added |" in report.markdown()
    # as an expected column it is matched exactly and mapped to itself
    report = detect_drift({hostile: "string"}, [hostile])
    assert report.rename_map() == {hostile: hostile}
    # pipes in names cannot break the markdown table
    report = detect_drift({"a|b": "string"}, ["a|b"])
    assert report.markdown().splitlines()[2].count(" | ") == 4


# --- classification -----------------------------------------------------------------------------------


def test_dropped_column_is_reported_removed():
    report = detect_drift(strings(["ride_id", "bikeid", "started_at"]), ["ride_id", "started_at"])
    m = mapping_of(report, "bikeid")
    assert (m.observed, m.decision) == (None, "unmapped")
    assert report.removed == ["bikeid"]
    assert report.added == []
    assert report.missing(["bikeid", "ride_id"]) == [m]
    assert drifted(report)


def test_added_column_is_reported():
    report = detect_drift(strings(JHU_0321[:6]), JHU_0321)  # JHU added Latitude, Longitude in March 2020
    assert report.added == ["Latitude", "Longitude"]
    assert report.removed == []
    assert all(m.decision == "exact" for m in report.mappings)
    assert drifted(report)


def test_column_map_always_wins():
    expected = {"amount": "float", "total": "float"}
    # without config the verbatim "amount" header is an exact match for "amount"...
    assert mapping_of(detect_drift(expected, ["amount", "total_amt"]), "amount").decision == "exact"
    # ...but the config says the file's "amount" is our "total"
    report = detect_drift(expected, ["amount", "total_amt"], column_map={"amount": "total"})
    total = mapping_of(report, "total")
    assert (total.observed, total.decision, total.confidence) == ("amount", "explicit", 1.0)
    assert total.evidence == {"column_map": 1.0}
    assert mapping_of(report, "amount").observed != "amount"
    assert report.rename_map()["amount"] == "total"


def test_accepted_rename_is_applied_like_explicit_and_column_map_beats_it():
    report = detect_drift({"usertype": "string"}, ["member_casual"], accepted={"member_casual": "usertype"})
    m = mapping_of(report, "usertype")
    assert (m.observed, m.decision) == ("member_casual", "explicit")
    assert not drifted(report)
    report = detect_drift({"a": "string", "b": "string"}, ["x"], column_map={"x": "a"}, accepted={"x": "b"})
    assert report.rename_map() == {"x": "a"}


def test_type_change_detected_from_samples():
    report = detect_drift(
        {"amount": "integer", "ts": "timestamp", "price": "float"},
        ["amount", "ts", "price"],
        sample={"amount": ["1.5", "2.25", ""], "ts": ["2024-01-02", "2024-01-03"], "price": ["3", "4"]},
    )
    assert report.type_changes == [{"column": "amount", "expected": "integer", "observed": "float"}]
    assert drifted(report)
    # an all-empty sample is no evidence of a type change
    assert detect_drift({"amount": "integer"}, ["amount"], sample={"amount": ["", None]}).type_changes == []


def test_incompatible_sample_values_demote_a_name_match():
    without = mapping_of(detect_drift({"total_amount": "float"}, ["total_amt"]), "total_amount")
    with_text = mapping_of(
        detect_drift({"total_amount": "float"}, ["total_amt"], sample={"total_amt": ["abc", "def", "ghi"]}),
        "total_amount",
    )
    assert without.decision == "auto_mapped"
    assert with_text.decision != "auto_mapped" and with_text.confidence < without.confidence
    assert with_text.evidence["type"] < 0.5


def test_previous_profile_separates_candidates_the_name_cannot():
    prev = {"amount": ColumnProfile.of([str(x) for x in range(10, 500, 7)])}
    sample = {"amount_usd": [str(x) for x in range(12, 480, 9)], "amount_eur": ["0.01", "0.5", "0.9", "0.3"]}
    report = detect_drift({"amount": "float"}, ["amount_usd", "amount_eur"], sample, previous_profiles=prev)
    m = mapping_of(report, "amount")
    assert m.observed == "amount_usd"
    assert m.candidates[0][0] == "amount_usd" and m.candidates[0][1] > m.candidates[1][1]
    assert m.evidence["profile"] > 0.8


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="suggest_threshold"):
        detect_drift({"a": "string"}, ["a"], auto_map_threshold=0.5, suggest_threshold=0.9)


# --- values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,expected",
    [
        (["12", "-3", "0"], "integer"),
        (["1.5", "2", "1e3"], "float"),
        (["true", "False", "yes"], "boolean"),
        (["2024-01-02", "2023-12-31"], "date"),
        (["2024-01-02T10:00:00Z", "2024-01-02 11:30:00", "2024-01-03"], "timestamp"),
        (["1/22/2020 17:00", "3/22/20 23:45"], "timestamp"),
        (['{"a": 1}', "[1, 2]"], "json"),
        (["00501", "02134"], "string"),  # zip codes keep their zeros
        (["abc", "12"], "string"),
        ([None, "", float("nan"), "NaN"], "string"),
        ([1, 2, None], "integer"),
        ([1.5, 2], "float"),
        ([True, False], "boolean"),
        ([datetime(2024, 1, 1, 10), date(2024, 1, 2)], "timestamp"),
        ([{"a": 1}], "json"),
        (["7", None, "", "8"], "integer"),
    ],
)
def test_infer_type(values, expected):
    assert infer_type(values) == expected
    assert expected in COLUMN_TYPES


def test_column_profile_round_trips_through_json():
    p = ColumnProfile.of(["1", "2", "2", "", None, "10"])
    assert p.type == "integer"
    assert p.null_fraction == pytest.approx(2 / 6)
    assert p.distinct_fraction == pytest.approx(3 / 4)
    assert (p.numeric_min, p.numeric_max) == (1.0, 10.0)
    assert ColumnProfile.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert ColumnProfile.of([]).type == "string"


# --- report -------------------------------------------------------------------------------------------


def test_to_json_shape():
    report = detect_drift(
        {"a": "integer", "starttime": "timestamp", "gone": "string"},
        ["A", "Start Time", "new_col"],
        sample={"A": ["1.5"]},
    )
    payload = report.to_json("trips")
    assert set(payload) == {"source", "mappings", "added", "removed", "type_changes"}
    assert payload["source"] == "trips"
    assert [set(m) for m in payload["mappings"]] == [
        {"expected", "observed", "confidence", "decision", "evidence"}
    ] * 3
    assert payload["mappings"][2]["evidence"]["name"] < 0.6  # "gone": why it is unmapped, per signal
    assert {m["decision"] for m in payload["mappings"]} <= {
        "exact",
        "auto_mapped",
        "suggested",
        "unmapped",
        "explicit",
    }
    assert all(0.0 <= m["confidence"] <= 1.0 for m in payload["mappings"])
    assert payload["added"] == ["new_col"]
    assert payload["removed"] == ["gone"]
    assert payload["type_changes"] == [{"column": "a", "expected": "integer", "observed": "float"}]
    assert json.loads(json.dumps(payload)) == payload
    md = report.markdown()
    assert md.splitlines()[0] == "| expected | observed | confidence | decision | evidence |"
    assert "auto_mapped" in md and "new_col" in md


# --- accuracy harness ---------------------------------------------------------------------------------


def test_accuracy_harness_meets_targets_on_the_corpus():
    if not CORPUS.is_file():
        pytest.skip(f"../shared/corpus not found beside the clone: {CORPUS}")
    spec = importlib.util.spec_from_file_location("drift_accuracy", REPO / "benchmarks/drift_accuracy.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    result = harness.evaluate(harness.all_cases())
    assert result["eval"]["cases"] >= 20 and result["dev"]["cases"] >= 20  # both parts are populated
    for key in ("dev", "eval", "all"):
        summary = result[key]
        assert summary["false_auto_maps"] == 0, [
            r["wrong_auto_maps"] for r in result["cases"] if r["wrong_auto_maps"]
        ]
        assert summary["precision"] == 1.0
        assert summary["unchanged_matched"] == 1.0
        assert summary["recall"] >= harness.RECALL_TARGET, summary
        assert summary["auto_recall"] >= harness.AUTO_RECALL_TARGET, summary
        assert summary["right_at_or_above_auto"] >= 0.99
