"""detect_drift: compare a batch's columns with the expected schema, in the steps the package docstring names.

Fixed first (column_map, exact names, accepted renames, swapped headers), then every open pair is scored and
the pairs are assigned globally; each decision's confidence is decided here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..types import COLUMN_TYPES, coercible, infer_type_and_count
from .assignment import Assignment, exact_regret
from .names import NameScorer, normalize_name
from .profiles import ColumnProfile, profile_similarity
from .report import ColumnMapping, DriftReport
from .scoring import VALUES_DOUBT, Headers, Pairs, logit, score_pairs

# Log-odds margin the optimal assignment must keep over the best assignment without the pair before
# the pair is auto-applied. 1.0 ~ an odds ratio of e: 0.95 vs a 0.90 rival (0.75) is not enough,
# 0.97 vs 0.90 (1.28) is.
AUTO_MARGIN = 1.0
# Name evidence alone must reach this before other evidence may lift a pair to auto-map: value
# profiles of numeric columns look alike too often to rename on them alone.
AUTO_NAME_FLOOR = 0.7
# Pairs below this confidence do not take part in the assignment at all.
ASSIGN_FLOOR = 0.35
# Swapped headers: a header-matched column is read as swapped only when the values under another
# matched header fit its last load's profile by this much more than its own do (both ways round) and
# fit it well in absolute terms. Columns of one kind (small counts, ratings) look alike and never
# clear the margin: an unclear case stays silent rather than stopping good loads.
SWAP_MARGIN = 0.2
SWAP_FLOOR = 0.8


def _resolve(name: str, pool: Sequence[str]) -> str | None:
    """Find a configured name among actual names: verbatim first, then after normalisation."""
    if name in pool:
        return name
    norm = normalize_name(name)
    return next((x for x in pool if normalize_name(x) == norm), None)


def detect_drift(
    expected: Mapping[str, str],
    observed: Sequence[str],
    sample: Mapping[str, Sequence[object]] | None = None,
    *,
    column_map: Mapping[str, str] | None = None,
    accepted: Mapping[str, str] | None = None,
    auto_map_threshold: float = 0.85,
    suggest_threshold: float = 0.6,
    previous_profiles: Mapping[str, ColumnProfile] | None = None,
) -> DriftReport:
    """Compare observed columns with the expected schema (name -> type) and classify each column.

    ``column_map`` and ``accepted`` map observed -> expected (column_map always wins, accepted wins over
    everything but an exact name). ``sample`` maps observed column -> sampled values; ``previous_profiles``
    maps expected column -> profile from the last load.
    """
    _check_thresholds(auto_map_threshold, suggest_threshold)
    exp_names = list(expected)
    obs_names = list(dict.fromkeys(str(o) for o in observed))
    sample = sample or {}
    previous_profiles = previous_profiles or {}
    fixed: dict[str, ColumnMapping] = {}
    used: set[str] = set()

    # 1. the config's column_map: the user's word beats everything, an exact name included
    _fix_explicit("column_map", column_map, exp_names, obs_names, fixed, used)
    # 2. exact after normalisation
    _fix_exact(exp_names, obs_names, fixed, used)
    # 2b. renames applied (and remembered) before, for the columns still open
    _fix_explicit("accepted", accepted, exp_names, obs_names, fixed, used)

    # 3. score the remaining pairs
    rest_e = [e for e in exp_names if e not in fixed]
    rest_o = [o for o in obs_names if o not in used]
    scorer = NameScorer(exp_names + obs_names)
    obs_types, obs_profiles = _observe(obs_names, sample)
    # 2c. headers that name columns plainly can still be swapped: the values tell
    _mark_swaps(fixed, previous_profiles, obs_profiles)
    anchors = [(exp_names.index(e), obs_names.index(m.observed)) for e, m in fixed.items() if m.observed]
    pairs = score_pairs(
        expected,
        Headers(exp_names, obs_names, anchors),
        rest_e,
        rest_o,
        scorer,
        obs_types,
        obs_profiles,
        previous_profiles,
    )

    # 4. global assignment of the open pairs, and the decision on each
    results = {**fixed, **_open_mappings(pairs, auto_map_threshold, suggest_threshold)}
    return _report(expected, obs_names, [results[e] for e in exp_names], obs_types)


def _check_thresholds(auto_map_threshold: float, suggest_threshold: float) -> None:
    if not 0.0 <= suggest_threshold <= auto_map_threshold <= 1.0:
        raise ValueError(
            f"drift thresholds must satisfy 0 <= suggest_threshold ({suggest_threshold}) "
            f"<= auto_map_threshold ({auto_map_threshold}) <= 1"
        )


def _fix_explicit(
    origin: str,
    mapping: Mapping[str, str] | None,
    exp_names: Sequence[str],
    obs_names: Sequence[str],
    fixed: dict[str, ColumnMapping],
    used: set[str],
) -> None:
    """Apply the user's `column_map` or the renames `accepted` earlier to the columns still open."""
    for obs_key, exp_key in (mapping or {}).items():
        o = _resolve(str(obs_key), [x for x in obs_names if x not in used])
        e = _resolve(str(exp_key), [x for x in exp_names if x not in fixed])
        if o is None:
            continue  # a mapping for a column this batch does not have: nothing to apply
        if e is None:
            if origin == "column_map" and normalize_name(str(obs_key)) == normalize_name(str(exp_key)):
                used.add(o)  # `{price: price}`: the user's word that it is a column of its own, not a rename
            continue
        fixed[e] = ColumnMapping(e, o, 1.0, "explicit", {origin: 1.0}, [(o, 1.0)])
        used.add(o)


def _fix_exact(
    exp_names: Sequence[str], obs_names: Sequence[str], fixed: dict[str, ColumnMapping], used: set[str]
) -> None:
    """Exact after normalisation; a verbatim spelling wins over another that normalises equal. A header that
    plainly names the column beats a rename remembered from an earlier file: the remembered source column, if
    present too, is then a column of its own."""
    by_norm: dict[str, list[str]] = {}
    for o in obs_names:
        if o not in used:
            by_norm.setdefault(normalize_name(o), []).append(o)
    for e in exp_names:
        if e in fixed:
            continue
        pool = [o for o in by_norm.get(normalize_name(e), []) if o not in used]
        if pool:
            o = e if e in pool else pool[0]
            fixed[e] = ColumnMapping(e, o, 1.0, "exact", {"name": 1.0}, [(o, 1.0)])
            used.add(o)


def _observe(
    obs_names: Sequence[str], sample: Mapping[str, Sequence[object]]
) -> tuple[dict[str, str], dict[str, ColumnProfile]]:
    """The type and value profile of each sampled observed column that has a present value."""
    obs_types: dict[str, str] = {}
    obs_profiles: dict[str, ColumnProfile] = {}
    for o in obs_names:
        if o in sample:
            vals = list(sample[o])
            typ, n = infer_type_and_count(vals)
            if n:
                obs_types[o] = typ
                obs_profiles[o] = ColumnProfile.of(vals)
    return obs_types, obs_profiles


def _mark_swaps(
    fixed: dict[str, ColumnMapping],
    previous_profiles: Mapping[str, ColumnProfile],
    obs_profiles: Mapping[str, ColumnProfile],
) -> None:
    """Header-matched columns whose values fit each other's last load are `swapped` (column_map is the user's
    word and is not second-guessed)."""
    by_header = {e: m.observed for e, m in fixed.items() if "column_map" not in m.evidence and m.observed}
    for e, (partner, own, cross) in _swaps(by_header, previous_profiles, obs_profiles).items():
        m, observed = fixed[e], by_header[e]  # by_header holds m.observed
        own = round(own, 3)  # the confidence of a swapped pairing: how well its values fit the column
        fixed[e] = ColumnMapping(
            e,
            observed,
            own,
            "swapped",
            {**m.evidence, "profile": own, "swap_profile": round(cross, 3)},
            [(observed, own)],
            swapped_with=partner,
        )


def _decide(
    pairs: Pairs, auto_map_threshold: float, suggest_threshold: float, auto_cap: float
) -> tuple[dict[int, int], dict[int, tuple[str, float, dict[str, float]]]]:
    """The global assignment (row -> column) and each assigned pair's (decision, confidence, evidence).

    Log-odds weights: maximising the summed log-odds is the most likely joint assignment, and (unlike summed
    confidences) never trades one sure pair for two weak ones."""
    conf, evid = pairs.conf, pairs.evid
    floor = min(ASSIGN_FLOOR, suggest_threshold)
    base = logit(floor)
    weights = [[(logit(c) - base + 1e-6) if c >= floor else 0.0 for c in row] for row in conf]
    solved = Assignment(weights)
    chosen = dict(solved.pairs)
    # exact regrets are cheap on small matrices; on wide ones the dual bound alone decides, which
    # can only err towards "suggested"
    exact_ok = len(pairs.expected) * len(pairs.observed) <= 1600

    # decide each assigned pair; the confidence it gets is the one number shown for it everywhere
    decided: dict[int, tuple[str, float, dict[str, float]]] = {}
    for i, j in chosen.items():
        c, ev = conf[i][j], dict(evid[i][j])
        decision = "suggested"
        if c >= auto_map_threshold:
            regret = solved.regret_lower_bound(i, j)
            if regret < AUTO_MARGIN and exact_ok:
                regret = exact_regret(weights, i, j, solved.total)
            ev["margin"] = round(regret, 3)
            # the values were compared and do not confirm it, or the names differ only in number ("trips" a
            # count, "trip" an identifier) and no values confirm it
            doubted = ev.get("values", 0.0 if "number_only" in ev else 1.0) < VALUES_DOUBT
            if ev["name"] >= AUTO_NAME_FLOOR and regret >= AUTO_MARGIN and not doubted:
                decision = "auto_mapped"
            else:
                # ambiguous or resting on values alone: report it below the auto threshold so the
                # number the user sees agrees with what was done
                c = min(c, auto_cap)
        decided[i] = ("unmapped" if decision == "suggested" and c < suggest_threshold else decision, c, ev)
    return chosen, decided


def _open_mappings(
    pairs: Pairs, auto_map_threshold: float, suggest_threshold: float
) -> dict[str, ColumnMapping]:
    """The mapping of each open expected column, with its top candidates."""
    conf, evid, rest_o = pairs.conf, pairs.evid, pairs.observed
    auto_cap = round(auto_map_threshold - 0.01, 3)
    suggest_cap = max(round(suggest_threshold - 0.001, 3), 0.0)
    chosen, decided = _decide(pairs, auto_map_threshold, suggest_threshold, auto_cap)
    taken = {chosen[i]: i for i, (d, _, _) in decided.items() if d != "unmapped"}

    def pair_confidence(i: int, j: int) -> float:
        if chosen.get(i) == j:
            return decided[i][1]
        if taken.get(j, i) != i:
            return min(conf[i][j], suggest_cap)  # it went to a column it fits better: not credible here
        return min(conf[i][j], auto_cap)  # not applied, so never shown at an applying confidence

    results: dict[str, ColumnMapping] = {}
    for i, e in enumerate(pairs.expected):
        # ranked by the pair's own evidence; each shown with the pair's confidence after the assignment
        order = sorted(range(len(rest_o)), key=lambda j: (-conf[i][j], j))
        candidates = [(rest_o[j], pair_confidence(i, j)) for j in order[:3]]
        decision, c, ev = decided.get(i, ("unmapped", 0.0, dict(evid[i][order[0]]) if order else {}))
        if decision == "unmapped":
            # the number of "no credible match" is its best candidate's, below drift.suggest_threshold
            results[e] = ColumnMapping(
                e, None, max((s for _, s in candidates), default=0.0), "unmapped", ev, candidates
            )
            continue
        results[e] = ColumnMapping(e, rest_o[chosen[i]], c, decision, ev, candidates)
    return results


def _report(
    expected: Mapping[str, str],
    obs_names: Sequence[str],
    mappings: list[ColumnMapping],
    obs_types: Mapping[str, str],
) -> DriftReport:
    applied_obs = {m.observed for m in mappings if m.applied}
    type_changes = []
    for m in mappings:
        if m.applied and m.expected is not None and m.observed is not None and m.observed in obs_types:
            exp_t = str(expected[m.expected])
            obs_t = obs_types[m.observed]
            if exp_t in COLUMN_TYPES and not coercible(exp_t, obs_t):
                type_changes.append({"column": m.expected, "expected": exp_t, "observed": obs_t})
    # a suggestion's observed column is that suggestion, not also a new column: the same values are
    # never both "maybe column X" and "column Y"
    suggested_obs = {m.observed for m in mappings if m.decision == "suggested"}
    conflicts = _conflicts(obs_names, mappings)
    return DriftReport(
        mappings=mappings,
        added=[o for o in obs_names if o not in applied_obs and o not in suggested_obs],
        removed=[m.expected for m in mappings if not m.applied],  # type: ignore[misc]
        type_changes=type_changes,
        conflicts=conflicts,
    )


def _conflicts(observed: Sequence[str], mappings: Sequence[ColumnMapping]) -> list[dict]:
    """Observed columns left under their own name that would land in a column another observed column loads
    into (a `column_map` source beside a header naming its target; "Amount" beside "amount"): one table
    column cannot hold both, and SQLite would not even tell their names apart."""
    into = {
        normalize_name(str(m.expected)): (str(m.expected), str(m.observed))
        for m in mappings
        if m.applied and m.observed is not None
    }
    loaded = {m.observed for m in mappings if m.applied or m.decision == "suggested"}
    out = []
    for o in observed:
        hit = into.get(normalize_name(o)) if o not in loaded else None
        if hit is not None:
            out.append({"column": hit[0], "observed": o, "mapped_from": hit[1]})
    return out


def _swaps(
    by_header: Mapping[str, str], previous: Mapping[str, ColumnProfile], observed: Mapping[str, ColumnProfile]
) -> dict[str, tuple[str, float, float]]:
    """Header-matched columns whose values moved: expected -> (observed column whose values fit it, own
    profile similarity, that column's). Each column of a swap fits the other's last load far better than its
    own (SWAP_MARGIN, SWAP_FLOOR), both ways round: a two-way swap, or a rotation of several headers."""
    pairs = {e: o for e, o in by_header.items() if e in previous and o in observed}
    own = {e: profile_similarity(previous[e], observed[o]) for e, o in pairs.items()}
    # only a column that fits its own last load poorly can gain the margin: cheap on wide headers
    open_ = [e for e in pairs if own[e] <= 1.0 - SWAP_MARGIN]
    best: dict[str, tuple[str, float]] = {}
    for e in open_:
        fits = [(profile_similarity(previous[e], observed[pairs[f]]), f) for f in open_ if f != e]
        if fits:
            sim, f = max(fits)
            if sim >= SWAP_FLOOR and sim - own[e] >= SWAP_MARGIN:
                best[e] = (f, sim)
    out: dict[str, tuple[str, float, float]] = {}
    for (
        start
    ) in best:  # keep the columns on a cycle of "fits the other better": a -> b -> a, a -> b -> c -> a
        path, e = [], start
        while e in best and e not in path:
            path.append(e)
            e = best[e][0]
        if e == start:
            out.update({x: (pairs[best[x][0]], own[x], best[x][1]) for x in path})
    return out
