"""The confidence of each open (expected, observed) pair: name (with siblings), position, type and value evidence
combined in log-odds space. detect.py fixes the sure columns first and decides on the pairs scored here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..types import COLUMN_TYPES
from .names import NameScorer
from .profiles import ColumnProfile, incompatible, profile_similarity, type_affinity, value_match
from .structure import position_evidence, sibling_counts

# Structural evidence (structure.py): name evidence of a pair whose change 1 or 2+ other pairs share; a name
# this sure (and the best both ways) is an anchor for positions; the log-odds a position adds; and the
# confidence of a pair alone in its gap whatever its name (a suggestion, never more: names stay below the floor).
SIBLING_TWO, SIBLING_MANY = 0.8, 0.9
SURE_NAME = 0.9
POSITION_WEIGHT = 1.0
POSITION_FLOOR_FROM, POSITION_FLOOR = 1.0, 0.62
# Value evidence (profiles.py): the log-odds an incompatible profile takes away; a value match below which the
# floors do not apply; the value match that alone earns a suggestion, and what position adds to it.
INCOMPATIBLE_PENALTY = 3.0
VALUES_COMPATIBLE = 0.3
VALUES_FLOOR_FROM = 0.8
VALUES_FLOOR_BONUS = 0.1
# A pair whose values were compared and match less than this is never applied without asking.
VALUES_DOUBT = 0.6


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class Pairs:
    """The open (expected, observed) pairs: row i is expected[i], column j observed[j]."""

    expected: list[str]
    observed: list[str]
    conf: list[list[float]]
    evid: list[list[dict[str, float]]]


@dataclass
class Headers:
    """Both headers in order, and the (expected, observed) positions already paired."""

    expected: list[str]
    observed: list[str]
    anchors: list[tuple[int, int]]


def _name_evidence(
    headers: Headers, rest_e: list[str], rest_o: list[str], scorer: NameScorer
) -> tuple[list[list[float]], dict[tuple[int, int], int], dict[tuple[int, int], float]]:
    """Name similarity of each open pair, raised where sibling pairs share its change; the sibling counts; and
    the position evidence, with sure name pairs (mutual best, >= SURE_NAME) as extra anchors."""
    names = [[scorer.similarity(e, o) for o in rest_o] for e in rest_e]
    siblings = sibling_counts([scorer.tokens(e) for e in rest_e], [scorer.tokens(o) for o in rest_o])
    for (i, j), n in siblings.items():
        names[i][j] = max(names[i][j], SIBLING_MANY if n >= 3 else SIBLING_TWO)
    anchors = list(headers.anchors)
    for i, row in enumerate(names):
        if row:
            j = max(range(len(row)), key=row.__getitem__)
            if row[j] >= SURE_NAME and all(names[x][j] < row[j] for x in range(len(names)) if x != i):
                anchors.append((headers.expected.index(rest_e[i]), headers.observed.index(rest_o[j])))
    e_at = {e: headers.expected.index(e) for e in rest_e}
    o_at = {o: headers.observed.index(o) for o in rest_o}
    pos = position_evidence(
        len(headers.expected), len(headers.observed), anchors, list(e_at.values()), list(o_at.values())
    )
    by_pair = {
        (i, j): pos[(e_at[e], o_at[o])]
        for i, e in enumerate(rest_e)
        for j, o in enumerate(rest_o)
        if (e_at[e], o_at[o]) in pos
    }
    return names, siblings, by_pair


def score_pairs(
    expected: Mapping[str, str],
    headers: Headers,
    rest_e: list[str],
    rest_o: list[str],
    scorer: NameScorer,
    obs_types: Mapping[str, str],
    obs_profiles: Mapping[str, ColumnProfile],
    previous_profiles: Mapping[str, ColumnProfile],
) -> Pairs:
    """Each open pair's confidence and evidence: name (with siblings), position, type and value profile
    combined in log-odds space."""
    conf = [[0.0] * len(rest_o) for _ in rest_e]
    evid: list[list[dict[str, float]]] = [[{} for _ in rest_o] for _ in rest_e]
    names, siblings, positions = _name_evidence(headers, rest_e, rest_o, scorer)
    for i, e in enumerate(rest_e):
        prev = previous_profiles.get(e)
        declared = str(expected[e])
        # the previous load's profile knows the real type even when the declared one is "string"
        ref_type = (
            prev.type
            if prev is not None
            else (declared if declared in COLUMN_TYPES and declared != "string" else None)
        )
        for j, o in enumerate(rest_o):
            conf[i][j], evid[i][j] = _score(
                names[i][j], ref_type, prev, obs_types.get(o), obs_profiles.get(o), positions.get((i, j), 0.0)
            )
            if (i, j) in siblings:
                evid[i][j]["siblings"] = float(siblings[(i, j)])
            elif scorer.number_only(e, o):
                evid[i][j]["number_only"] = 1.0
    return Pairs(rest_e, rest_o, conf, evid)


def _score(
    name: float,
    ref_type: str | None,
    prev: ColumnProfile | None,
    obs_type: str | None,
    obs_profile: ColumnProfile | None,
    position: float = 0.0,
) -> tuple[float, dict[str, float]]:
    """One pair's confidence and the evidence it rests on."""
    ev = {"name": round(name, 3)}
    odds = logit(name)
    compatible = True
    if ref_type is not None and obs_type is not None:
        aff = type_affinity(ref_type, obs_type)
        ev["type"] = aff
        compatible = aff >= 0.7
        odds += 0.4 if aff >= 1 else 0.0 if aff >= 0.7 else -1.0 if aff >= 0.3 else -2.5
    values = None
    if prev is not None and obs_profile is not None:
        ps = profile_similarity(prev, obs_profile)
        ev["profile"] = round(ps, 3)
        odds += max(-2.5, min(1.2, (ps - 0.6) * 3.0))
        if incompatible(prev, obs_profile):
            ev["incompatible"] = 1.0
            compatible = False
            odds -= INCOMPATIBLE_PENALTY  # a count is not an identifier, whatever their names share
        values = value_match(prev, obs_profile)
        if values is not None:
            ev["values"] = values
            odds += max(-1.0, min(1.0, (values - 0.5) * 2.0))
            compatible = compatible and values >= VALUES_COMPATIBLE
    if position:
        ev["position"] = position
        odds += POSITION_WEIGHT * position
    c = sigmoid(odds)
    if compatible and (position >= POSITION_FLOOR_FROM or (values or 0.0) >= VALUES_FLOOR_FROM):
        # the only column that went where the old one was, or the one whose values are the old one's: worth
        # asking about whatever its name, never applied on that alone (AUTO_NAME_FLOOR)
        floor = POSITION_FLOOR + (
            VALUES_FLOOR_BONUS if (values or 0.0) >= VALUES_FLOOR_FROM and position else 0.0
        )
        c = max(c, floor)
    return round(c, 3), ev
