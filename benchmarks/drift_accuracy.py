"""Accuracy of rename recognition over real, documented header changes, kept in a development and a held-apart
evaluation part.

    python benchmarks/drift_accuracy.py [--json PATH] [--quiet] [--split dev|eval|all]

Cases: ``../shared/corpus/drift_dev_cases.json`` (beside the clone) and this project's
``benchmarks/drift_cases_extra.json`` (both development: the matcher was built on them) and
``benchmarks/drift_cases/*.json`` (collected blind to the matcher, each case citing its source). A case of the
latter goes to the evaluation part when the SHA-1 of its ``family`` is odd: the split is fixed by the data, not
chosen, and a dataset's cases never sit on both sides. Tune on ``--split dev``; report on ``eval``.

For each case, detect_drift() compares the old header (typed from the case's old sample when it carries one,
else "string"; the old sample's value profiles stand for the previous load) with the new header (and its
sample), and the result is scored against the case's ``true_mapping``:

- precision: share of auto-applied mappings that are right; wrong auto-maps (target: 0);
- recall: share of true renames auto-applied or the top suggestion (target >= 0.85); auto recall (>= 0.6);
- unchanged: share of unchanged columns matched exactly (target: 1.0);
- per class (the case's ``classes``: format, token, containment, siblings, short_code, semantic) and traps
  (look-alike pairs that are different columns: never auto-applied);
- reliability: every pair the matcher proposed (auto-applied or suggested), by confidence bucket, share right.

Exit 0 when the targets hold on every part, 1 when they do not, 2 when the corpus is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared/corpus/drift_dev_cases.json"
EXTRA = REPO / "benchmarks/drift_cases_extra.json"
COLLECTED = REPO / "benchmarks/drift_cases"
RESULTS = REPO / "benchmarks/results/drift_accuracy.json"
RECALL_TARGET = 0.85
AUTO_RECALL_TARGET = 0.6
BUCKETS = [(0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.001)]
CLASSES = ("format", "token", "containment", "siblings", "short_code", "semantic")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from etl_assets.drift import ColumnProfile, detect_drift  # noqa: E402
from etl_assets.types import infer_type  # noqa: E402


def split_of(case: dict[str, Any]) -> str:
    family = str(case.get("family") or case["id"])
    return "eval" if int(hashlib.sha1(family.encode()).hexdigest(), 16) % 2 else "dev"


# R's row names, written as a column by write.csv (`rownames`, or a header left empty): an export artefact that
# holds row numbers on one side and labels on the other, not a column of the dataset.
ARTEFACTS = {"rownames", ""}


def _without_artefacts(case: dict[str, Any]) -> dict[str, Any]:
    keep = [c for c in case["old_columns"] if c not in ARTEFACTS]
    if len(keep) == len(case["old_columns"]) and not ARTEFACTS & set(case["new_columns"]):
        return case
    drop = set(case["old_columns"]) - set(keep)
    mapping = {k: v for k, v in case["true_mapping"].items() if k not in drop and v not in ARTEFACTS}
    renamed = case.get("renamed")
    return {
        **case,
        "old_columns": keep,
        "new_columns": [c for c in case["new_columns"] if c not in ARTEFACTS],
        "true_mapping": mapping,
        "renamed": [k for k in renamed if k in mapping]
        if isinstance(renamed, list)
        else renamed and {k: v for k, v in renamed.items() if k in mapping},
        "traps": [t for t in case.get("traps") or [] if not ARTEFACTS & set(t)],
    }


def load_cases(path: Path, origin: str) -> list[dict[str, Any]]:
    cases = [_without_artefacts(c) for c in json.loads(path.read_text(encoding="utf-8"))]
    for c in cases:
        c["_origin"] = origin
        c["_split"] = split_of(c) if origin == "collected" else "dev"
    return cases


def all_cases() -> list[dict[str, Any]]:
    cases = load_cases(CORPUS, "corpus")
    if EXTRA.is_file():
        cases += load_cases(EXTRA, "extra")
    for path in sorted(COLLECTED.glob("*.json")):
        cases += load_cases(path, "collected")
    return cases


def _renamed(case: dict[str, Any]) -> dict[str, str]:
    truth: dict[str, str] = case["true_mapping"]
    listed = case.get("renamed")
    if isinstance(listed, list):
        return {k: truth[k] for k in listed}
    return listed or {k: v for k, v in truth.items() if k != v}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    old_sample = case.get("old_sample") or {}
    expected = {c: (infer_type(old_sample[c]) if c in old_sample else "string") for c in case["old_columns"]}
    profiles = {c: ColumnProfile.of(v) for c, v in old_sample.items() if c in expected}
    report = detect_drift(
        expected, case["new_columns"], case.get("new_sample") or None, previous_profiles=profiles or None
    )
    truth: dict[str, str] = case["true_mapping"]
    renamed = _renamed(case)
    classes: dict[str, str] = case.get("classes") or {}
    traps = {tuple(t) for t in case.get("traps") or []}

    applied = correct_applied = 0
    wrong: list[dict[str, Any]] = []
    proposed: list[tuple[float, bool, str]] = []  # (confidence, right, decision) of every non-exact proposal
    trap_hits: list[dict[str, Any]] = []
    by_expected = {m.expected: m for m in report.mappings}
    for m in report.mappings:
        right = truth.get(m.expected) == m.observed
        if m.observed is not None and m.decision in ("auto_mapped", "suggested"):
            proposed.append((m.confidence, right, m.decision))
        if (m.expected, m.observed) in traps:
            trap_hits.append({"pair": [m.expected, m.observed], "decision": m.decision})
        if not m.applied:
            continue
        applied += 1
        if right:
            correct_applied += 1
        else:
            wrong.append(
                {
                    "expected": m.expected,
                    "observed": m.observed,
                    "truth": truth.get(m.expected),
                    "decision": m.decision,
                    "confidence": m.confidence,
                    "evidence": m.evidence,
                }
            )

    found = auto_found = 0
    missed: list[dict[str, Any]] = []
    per_class: dict[str, dict[str, int]] = {}
    for old, new in renamed.items():
        m = by_expected[old]
        cls = per_class.setdefault(
            classes.get(old, "unclassed"), {"renames": 0, "found": 0, "auto": 0, "wrong": 0}
        )
        cls["renames"] += 1
        if m.applied and m.observed != new:
            cls["wrong"] += 1
        if m.observed == new and m.decision in ("exact", "auto_mapped", "explicit"):
            auto_found += 1
            found += 1
            cls["found"] += 1
            cls["auto"] += 1
        elif m.observed == new and m.decision == "suggested":
            found += 1
            cls["found"] += 1
        else:
            missed.append(
                {
                    "expected": old,
                    "truth": new,
                    "class": classes.get(old),
                    "got": m.observed,
                    "decision": m.decision,
                    "confidence": m.confidence,
                    "top": m.candidates[:1],
                }
            )
    unchanged = [old for old, new in truth.items() if old == new]
    unchanged_ok = sum(1 for old in unchanged if by_expected[old].decision == "exact")
    return {
        "id": case["id"],
        "origin": case["_origin"],
        "split": case["_split"],
        "renames": len(renamed),
        "found": found,
        "auto_found": auto_found,
        "applied": applied,
        "correct_applied": correct_applied,
        "unchanged": len(unchanged),
        "unchanged_matched": unchanged_ok,
        "wrong_auto_maps": wrong,
        "missed": missed,
        "per_class": per_class,
        "traps": len(traps),
        "trap_hits": trap_hits,
        "proposed": proposed,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    renames = sum(r["renames"] for r in rows)
    applied = sum(r["applied"] for r in rows)
    unchanged = sum(r["unchanged"] for r in rows)
    classes: dict[str, dict[str, int]] = {}
    for r in rows:
        for name, c in r["per_class"].items():
            acc = classes.setdefault(name, {"renames": 0, "found": 0, "auto": 0, "wrong": 0})
            for key in acc:
                acc[key] += c[key]
    per_class = {
        name: {
            **c,
            "recall": c["found"] / c["renames"] if c["renames"] else 1.0,
            "auto_recall": c["auto"] / c["renames"] if c["renames"] else 1.0,
            "precision": c["auto"] / (c["auto"] + c["wrong"]) if c["auto"] + c["wrong"] else 1.0,
        }
        for name, c in sorted(classes.items())
    }
    hits = [h for r in rows for h in r["trap_hits"]]
    proposed = [p for r in rows for p in r["proposed"]]
    reliability = []
    for lo, hi in BUCKETS:
        inside = [right for conf, right, _ in proposed if lo <= conf < hi]
        reliability.append(
            {"bucket": f"{lo:.2f}-{min(hi, 1.0):.2f}", "pairs": len(inside), "right": sum(inside)}
        )
    at_auto = [right for conf, right, _ in proposed if conf >= 0.85]
    return {
        "cases": len(rows),
        "renames": renames,
        "applied": applied,
        "precision": (sum(r["correct_applied"] for r in rows) / applied) if applied else 1.0,
        "recall": (sum(r["found"] for r in rows) / renames) if renames else 1.0,
        "auto_recall": (sum(r["auto_found"] for r in rows) / renames) if renames else 1.0,
        "false_auto_maps": sum(len(r["wrong_auto_maps"]) for r in rows),
        "unchanged": unchanged,
        "unchanged_matched": (sum(r["unchanged_matched"] for r in rows) / unchanged) if unchanged else 1.0,
        "traps": sum(r["traps"] for r in rows),
        "traps_applied": sum(1 for h in hits if h["decision"] == "auto_mapped"),
        "traps_suggested": sum(1 for h in hits if h["decision"] == "suggested"),
        "per_class": per_class,
        "reliability": reliability,
        "right_at_or_above_auto": (sum(at_auto) / len(at_auto)) if at_auto else 1.0,
    }


def meets_targets(summary: dict[str, Any]) -> bool:
    return (
        summary["false_auto_maps"] == 0
        and summary["recall"] >= RECALL_TARGET
        and summary["auto_recall"] >= AUTO_RECALL_TARGET
        and summary["unchanged_matched"] == 1.0
    )


PARTS = ("dev", "eval", "all")


def evaluate(cases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [run_case(c) for c in cases]
    return {
        "cases": rows,
        "dev": summarise([r for r in rows if r["split"] == "dev"]),
        "eval": summarise([r for r in rows if r["split"] == "eval"]),
        "all": summarise(rows),
    }


def _print(result: dict[str, Any], quiet: bool, split: str) -> None:
    shown_rows = [r for r in result["cases"] if split == "all" or r["split"] == split]
    print(f"{'case':<48} {'split':>5} {'renames':>7} {'found':>5} {'auto':>5} {'applied':>7} {'wrong':>5}")
    for r in shown_rows:
        print(
            f"{r['id'][:48]:<48} {r['split']:>5} {r['renames']:>7} {r['found']:>5} {r['auto_found']:>5} "
            f"{r['applied']:>7} {len(r['wrong_auto_maps']):>5}"
        )
        if not quiet:
            for w in r["wrong_auto_maps"]:
                print(
                    f"    WRONG {w['expected']!r} -> {w['observed']!r} ({w['decision']} {w['confidence']}), "
                    f"truth {w['truth']!r} {w['evidence']}"
                )
            for m in r["missed"]:
                print(
                    f"    missed [{m['class']}] {m['expected']!r} -> {m['truth']!r}: {m['decision']} {m['got']!r} "
                    f"{m['confidence']} top={m['top']}"
                )
    parts = [split] if split != "all" else list(PARTS)
    print()
    print(
        f"{'':<5} {'cases':>5} {'renames':>7} {'precision':>9} {'recall':>7} {'auto recall':>11} "
        f"{'wrong auto':>10} {'unchanged':>9} {'traps applied':>13}"
    )
    for key in parts:
        s = result[key]
        print(
            f"{key:<5} {s['cases']:>5} {s['renames']:>7} {s['precision']:>9.3f} {s['recall']:>7.3f} "
            f"{s['auto_recall']:>11.3f} {s['false_auto_maps']:>10} {s['unchanged_matched']:>9.3f} "
            f"{s['traps_applied']:>6}/{s['traps']:<6}"
        )
    for key in parts:
        s = result[key]
        print(f"\n{key}: per class (renames, recall, auto recall, precision of auto)")
        for name, c in s["per_class"].items():
            print(
                f"  {name:<12} {c['renames']:>5} {c['recall']:>7.3f} {c['auto_recall']:>7.3f} {c['precision']:>7.3f}"
            )
        print(f"{key}: reliability (confidence bucket, pairs proposed, share right)")
        for b in s["reliability"]:
            share = b["right"] / b["pairs"] if b["pairs"] else float("nan")
            print(f"  {b['bucket']:<10} {b['pairs']:>5} {share:>7.3f}")
        print(f"  right at or above 0.85: {s['right_at_or_above_auto']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", type=Path, default=RESULTS, help=f"where to write results (default {RESULTS})"
    )
    parser.add_argument("--quiet", action="store_true", help="only the per-case table and the totals")
    parser.add_argument("--split", choices=PARTS, default="all", help="the part to print (all are scored)")
    args = parser.parse_args(argv)
    if not CORPUS.is_file():
        print(
            f"drift_accuracy: corpus not found at {CORPUS} (expected ../shared/corpus beside the clone); "
            "nothing measured",
            file=sys.stderr,
        )
        return 2
    result = evaluate(all_cases())
    _print(result, args.quiet, args.split)
    ok = all(meets_targets(result[key]) for key in PARTS)
    result["targets"] = {
        "false_auto_maps": 0,
        "recall_min": RECALL_TARGET,
        "auto_recall_min": AUTO_RECALL_TARGET,
        "unchanged_matched": 1.0,
        "met": ok,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"\nwrote {args.json}; targets (0 wrong auto-maps, recall >= {RECALL_TARGET}, auto recall >= "
        f"{AUTO_RECALL_TARGET}, unchanged all matched) {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
