"""Accuracy of rename recognition over real, documented header changes.

    python benchmarks/drift_accuracy.py [--json PATH] [--quiet]

Cases come from ``../shared/corpus/drift_dev_cases.json`` (beside the clone) and this project's
``benchmarks/drift_cases_extra.json``. For each case, detect_drift() compares the old header (typed
from the case's sample when it carries one, else "string") with the new header, and the result is
scored against the case's ``true_mapping``:

- precision: share of applied mappings (exact + auto_mapped) that are right;
- false auto-maps: applied mappings that are wrong (target: 0);
- recall: share of true renames that were auto-applied or were the top suggestion (target >= 0.8);
- auto recall: share of true renames that were applied without asking.

Exit 0 when the targets hold over the corpus cases and over all cases, 1 when they do not,
2 when the corpus is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared/corpus/drift_dev_cases.json"
EXTRA = REPO / "benchmarks/drift_cases_extra.json"
RESULTS = REPO / "benchmarks/results/drift_accuracy.json"
RECALL_TARGET = 0.8

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from etl_assets.drift import detect_drift  # noqa: E402
from etl_assets.types import infer_type  # noqa: E402


def load_cases(path: Path, origin: str) -> list[dict[str, Any]]:
    cases = json.loads(path.read_text(encoding="utf-8"))
    for c in cases:
        c["_origin"] = origin
    return cases


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    old_sample = case.get("old_sample") or {}
    expected = {c: (infer_type(old_sample[c]) if c in old_sample else "string") for c in case["old_columns"]}
    report = detect_drift(expected, case["new_columns"], case.get("new_sample") or None)
    truth: dict[str, str] = case["true_mapping"]
    renamed: dict[str, str] = case.get("renamed") or {k: v for k, v in truth.items() if k != v}

    applied = correct_applied = 0
    wrong: list[dict[str, Any]] = []
    by_expected = {m.expected: m for m in report.mappings}
    for m in report.mappings:
        if not m.applied:
            continue
        applied += 1
        if truth.get(m.expected) == m.observed:
            correct_applied += 1
        else:
            wrong.append(
                {
                    "expected": m.expected,
                    "observed": m.observed,
                    "truth": truth.get(m.expected),
                    "decision": m.decision,
                    "confidence": m.confidence,
                }
            )

    found = auto_found = 0
    missed: list[dict[str, Any]] = []
    for old, new in renamed.items():
        m = by_expected[old]
        if m.observed == new and m.decision in ("exact", "auto_mapped", "explicit"):
            auto_found += 1
            found += 1
        elif m.observed == new and m.decision == "suggested":
            found += 1
        else:
            missed.append(
                {
                    "expected": old,
                    "truth": new,
                    "got": m.observed,
                    "decision": m.decision,
                    "confidence": m.confidence,
                    "top": m.candidates[:1],
                }
            )
    return {
        "id": case["id"],
        "origin": case["_origin"],
        "renames": len(renamed),
        "found": found,
        "auto_found": auto_found,
        "applied": applied,
        "correct_applied": correct_applied,
        "wrong_auto_maps": wrong,
        "missed": missed,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    renames = sum(r["renames"] for r in rows)
    applied = sum(r["applied"] for r in rows)
    return {
        "cases": len(rows),
        "renames": renames,
        "applied": applied,
        "precision": (sum(r["correct_applied"] for r in rows) / applied) if applied else 1.0,
        "recall": (sum(r["found"] for r in rows) / renames) if renames else 1.0,
        "auto_recall": (sum(r["auto_found"] for r in rows) / renames) if renames else 1.0,
        "false_auto_maps": sum(len(r["wrong_auto_maps"]) for r in rows),
    }


def meets_targets(summary: dict[str, Any]) -> bool:
    return summary["false_auto_maps"] == 0 and summary["recall"] >= RECALL_TARGET


def evaluate(cases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [run_case(c) for c in cases]
    corpus_rows = [r for r in rows if r["origin"] == "corpus"]
    return {"cases": rows, "corpus": summarise(corpus_rows), "overall": summarise(rows)}


def _print(result: dict[str, Any], quiet: bool) -> None:
    print(f"{'case':<48} {'renames':>7} {'found':>5} {'auto':>5} {'applied':>7} {'wrong':>5}")
    for r in result["cases"]:
        print(
            f"{r['id'][:48]:<48} {r['renames']:>7} {r['found']:>5} {r['auto_found']:>5} "
            f"{r['applied']:>7} {len(r['wrong_auto_maps']):>5}"
        )
        if not quiet:
            for w in r["wrong_auto_maps"]:
                print(
                    f"    WRONG {w['expected']!r} -> {w['observed']!r} ({w['decision']} {w['confidence']}), truth {w['truth']!r}"
                )
            for m in r["missed"]:
                print(
                    f"    missed {m['expected']!r} -> {m['truth']!r}: {m['decision']} {m['got']!r} "
                    f"{m['confidence']} top={m['top']}"
                )
    print()
    print(
        f"{'':<10} {'cases':>5} {'renames':>7} {'precision':>9} {'recall':>7} {'auto recall':>11} {'false auto-maps':>15}"
    )
    for key in ("corpus", "overall"):
        s = result[key]
        print(
            f"{key:<10} {s['cases']:>5} {s['renames']:>7} {s['precision']:>9.3f} {s['recall']:>7.3f} "
            f"{s['auto_recall']:>11.3f} {s['false_auto_maps']:>15}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"where to write results (default {RESULTS})"
    )
    parser.add_argument("--quiet", action="store_true", help="only the per-case table and the totals")
    args = parser.parse_args(argv)
    if not CORPUS.is_file():
        print(
            f"drift_accuracy: corpus not found at {CORPUS} (expected ../shared/corpus beside the clone); "
            "nothing measured",
            file=sys.stderr,
        )
        return 2
    cases = load_cases(CORPUS, "corpus")
    if EXTRA.is_file():
        cases += load_cases(EXTRA, "extra")
    result = evaluate(cases)
    _print(result, args.quiet)
    ok = meets_targets(result["corpus"]) and meets_targets(result["overall"])
    result["targets"] = {"false_auto_maps": 0, "recall_min": RECALL_TARGET, "met": ok}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"\nwrote {args.json}; targets (0 false auto-maps, recall >= {RECALL_TARGET}) "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
