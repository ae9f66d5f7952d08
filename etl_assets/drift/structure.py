"""Structural evidence of a rename, read off the two headers alone: where a column sits, and substitutions
that several sibling columns share.

- Position: columns already paired (exact names, the user's map, sure renames) are anchors. An open expected
  column and an open observed column in the same gap between two consecutive anchors, at the same offset of
  gaps of the same size, probably are one column renamed in place; most of all when the gap holds one column on
  each side. Anchors that cross each other (a reorder) are dropped first, so a reorder is never read as
  renames, and the headers' two ends count as anchors.
- Siblings: a pair whose names differ by the same change as other pairs ("DesireNextYear" -> "WantToWorkWith"
  on Language, Database and Platform; "cust" -> "customer" on six columns) is one of a family of renames made at
  once; the more siblings share the change, the surer each of them is. The change is learned from this header
  pair only.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# The position evidence of a pair in a gap of k columns on each side.
POSITION_SINGLE = 1.0  # k == 1 between two real neighbours
POSITION_EDGE = 0.8  # k == 1 at an end of the header (one neighbour only)
POSITION_SMALL = 0.3  # k <= 3: a tie-breaker, too weak to clear the auto-map margin alone
POSITION_WIDE = 0.15  # larger gaps: the order still agrees, but says less


def _increasing(anchors: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest chain of anchors in the same order on both sides (patience sorting, O(n log n))."""
    pts = sorted(anchors)
    tails: list[int] = []  # observed index ending the best chain of each length
    tail_at: list[int] = []  # its anchor
    back: list[int] = [-1] * len(pts)
    for k, (_, o) in enumerate(pts):
        pos = bisect.bisect_left(tails, o)
        if pos == len(tails):
            tails.append(o)
            tail_at.append(k)
        else:
            tails[pos] = o
            tail_at[pos] = k
        back[k] = tail_at[pos - 1] if pos else -1
    chain: list[tuple[int, int]] = []
    k = tail_at[-1] if tail_at else -1
    while k >= 0:
        chain.append(pts[k])
        k = back[k]
    return chain[::-1]


def position_evidence(
    n_expected: int,
    n_observed: int,
    anchors: Sequence[tuple[int, int]],
    open_expected: Sequence[int],
    open_observed: Sequence[int],
) -> dict[tuple[int, int], float]:
    """(expected index, observed index) -> position evidence in (0, 1] for open pairs that line up in a gap.
    Indices are positions in the full headers."""
    chain = [(-1, -1), *_increasing(anchors), (n_expected, n_observed)]
    oe, oo = sorted(open_expected), sorted(open_observed)
    out: dict[tuple[int, int], float] = {}
    for (ae, ao), (be, bo) in zip(chain, chain[1:], strict=False):
        ge = [i for i in oe if ae < i < be]
        go = [j for j in oo if ao < j < bo]
        if not ge or len(ge) != len(go):
            continue
        k = len(ge)
        if k == 1:
            level = POSITION_SINGLE if ae >= 0 and be < n_expected else POSITION_EDGE
        else:
            level = POSITION_SMALL if k <= 3 else POSITION_WIDE
        for i, j in zip(ge, go, strict=True):
            out[(i, j)] = level
    return out


def sibling_counts(
    tokens_expected: Sequence[Sequence[str]], tokens_observed: Sequence[Sequence[str]]
) -> dict[tuple[int, int], int]:
    """(i, j) -> how many sibling pairs (at least 2, this one included) make the same change as pair (i, j):
    the same words replaced, with a shared part (prefix and/or suffix) kept. Columns with nothing in common
    are never siblings."""
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[int, int]]] = {}
    for i, te in enumerate(tokens_expected):
        for j, to in enumerate(tokens_observed):
            for key in {_change(te, to), _word_change(te, to)}:
                if key is not None:
                    groups.setdefault(key, []).append((i, j))
    out: dict[tuple[int, int], int] = {}
    for members in groups.values():
        n = min(len({i for i, _ in members}), len({j for _, j in members}))
        if n >= 2:
            for pair in members:
                out[pair] = max(out.get(pair, 0), n)
    return out


def _change(te: Sequence[str], to: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The words that differ between two names around their shared prefix and suffix, or None when they share
    nothing, or differ in nothing."""
    p = 0
    while p < min(len(te), len(to)) and te[p] == to[p]:
        p += 1
    s = 0
    while s < min(len(te), len(to)) - p and te[-1 - s] == to[-1 - s]:
        s += 1
    if p + s == 0:
        return None
    mid_e, mid_o = tuple(te[p : len(te) - s]), tuple(to[p : len(to) - s])
    if mid_e == mid_o:
        return None
    # the change is tied to its side: a prefix replaced is not the same change as a suffix replaced
    side = ("<",) if p and not s else (">",) if s and not p else ("<>",)
    return (mid_e + side, mid_o)


def _word_change(te: Sequence[str], to: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The words dropped and the words added, wherever they sit ("radius error" -> "x.radius_se": error
    dropped, x and se added), when the names keep a word in common."""
    a, b = set(te), set(to)
    if not a & b or a == b:
        return None
    return (tuple(sorted(a - b)) + ("{}",), tuple(sorted(b - a)))
