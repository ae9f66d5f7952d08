"""Column-name similarity: normalisation, abbreviation expansion, light stemming and token rarity.

Names are data: they are only compared here, never formatted into SQL.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from rapidfuzz import fuzz

from .vocabulary import ABBREVIATIONS, COMMON_WORDS, DROPPABLE, RELATED_WORDS, SHORT_PIECES

_ACRONYM_BOUNDARY = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")  # "PULocation" -> "PU_Location"
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # "RateCode" -> "Rate_Code"
_WORD = re.compile(r"[^\W_]+")  # runs of unicode letters/digits; everything else separates


@lru_cache(maxsize=16384)
def normalize_name(name: str) -> str:
    """Canonical snake_case token string of a column name.

    Case, surrounding/inner whitespace, punctuation and separators do not matter, camelCase
    boundaries count as separators and accents are dropped:
    ``"Country/Region"``, ``"Country_Region"``, ``" country region "`` and ``"CountryRegion"`` all
    give ``"country_region"``. A name with no letter or digit at all keeps its (trimmed, casefolded)
    text so that two different punctuation-only headers stay different.
    """
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _CAMEL_BOUNDARY.sub("_", _ACRONYM_BOUNDARY.sub("_", text))
    tokens = _WORD.findall(text.casefold())
    if not tokens:
        return str(name).strip().casefold()
    return "_".join(tokens)


def _stem(tok: str) -> str:
    """A deliberately light stemmer: 'tested'->'test', 'results'->'result', 'stopped'->'stop'."""
    if not tok.isalpha() or len(tok) < 5:
        return tok
    t = tok
    stripped = False
    if t.endswith("ies") and len(t) >= 6:
        t, stripped = t[:-3] + "y", True
    elif t.endswith("ing") and len(t) >= 6:
        t, stripped = t[:-3], True
    elif t.endswith("ed") and len(t) >= 6:
        t, stripped = t[:-2], True
    elif t.endswith("es") and len(t) >= 6 and t[-3] in "sxz":
        t, stripped = t[:-2], True
    elif t.endswith("s") and not t.endswith(("ss", "us", "is")):
        t, stripped = t[:-1], True
    if stripped and len(t) >= 4 and t[-1] == t[-2] and t[-1] not in "lsz":
        t = t[:-1]  # stopp -> stop
    if t.endswith("e") and len(t) >= 5:
        t = t[:-1]  # create/created -> creat
    return t


@lru_cache(maxsize=4096)
def _canon(tok: str) -> str:
    if tok in ABBREVIATIONS:
        return _stem(ABBREVIATIONS[tok])
    s = _stem(tok)
    return _stem(ABBREVIATIONS[s]) if s in ABBREVIATIONS else s


_RELATED: dict[frozenset, float] = {frozenset((_canon(a), _canon(b))): s for a, b, s in RELATED_WORDS}
_KNOWN = {w for w in COMMON_WORDS} | set(ABBREVIATIONS) | set(ABBREVIATIONS.values())
_DROPPABLE_CANON = {_canon(t) for t in DROPPABLE}


def _is_droppable(tok: str) -> bool:
    # "#01" marks a leading ordinal group prefix ("01 - Rental Details ..."); other digits are
    # identity ("address_1" vs "address_2") and are never dropped
    return tok in _DROPPABLE_CANON or tok.startswith("#")


def _split_compound(tok: str, vocab: set[str]) -> list[str]:
    """Split a run-together token into known words ('bikeid' -> ['bike', 'id']), else keep it."""
    if len(tok) < 5 or not tok.isalpha() or tok in _KNOWN:
        return [tok]

    def ok(piece: str) -> bool:
        return (len(piece) >= 3 or piece in SHORT_PIECES) and piece in vocab and piece != tok

    best: list[str] | None = None
    for i in range(2, len(tok) - 1):
        a, b = tok[:i], tok[i:]
        if ok(a) and ok(b):
            cand = [a, b]
        elif ok(a):
            cand = None
            for j in range(2, len(b) - 1):
                if ok(b[:j]) and ok(b[j:]):
                    cand = [a, b[:j], b[j:]]
                    break
        else:
            cand = None
        # fewest pieces, then the split whose longest piece is longest (the most specific words)
        if cand and (best is None or (len(cand), -max(map(len, cand))) < (len(best), -max(map(len, best)))):
            best = cand
    return best or [tok]


def _tok_sim(a: str, b: str) -> float:
    """Similarity of two canonical tokens in [0, 1]."""
    if a == b:
        return 1.0
    rel = _RELATED.get(frozenset((a, b)))
    if rel is not None:
        return rel
    if not (a.isalpha() and b.isalpha()):
        return 0.0  # "admin2" vs "admin3": digits are identity, not spelling
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 3 and long_.startswith(short) and len(short) / len(long_) >= 0.5:
        return 0.8
    if len(short) >= 5:
        r = fuzz.ratio(a, b) / 100.0
        if r >= 0.8:  # spelling variants ("incidence"/"incident"); short words are too risky
            return 0.95 * r
    return 0.0


class NameScorer:
    """Name similarity over one call's headers (vocabulary and token rarity come from them)."""

    def __init__(self, names: Iterable[str]):
        norms = {normalize_name(n) for n in names}
        raw = {t for n in norms for t in n.split("_") if t.isalpha() and len(t) >= 2}
        self._vocab = _KNOWN | raw
        self._tokens: dict[str, list[str]] = {}
        df: dict[str, int] = {}
        for n in norms:
            for t in set(self.tokens(n)):
                df[t] = df.get(t, 0) + 1
        self._df = df
        self._n = max(len(norms), 1)

    def tokens(self, name: str) -> list[str]:
        norm = normalize_name(name)
        cached = self._tokens.get(norm)
        if cached is not None:
            return cached
        raw = [t for t in norm.split("_") if t]
        if len(raw) > 1 and raw[0].isdigit():
            raw[0] = "#" + raw[0]
        pieces: list[str] = []
        for t in raw:
            pieces.extend(_split_compound(t, self._vocab))
        out = []
        for i, t in enumerate(pieces):
            # Rails-style suffixes: created_at is a time, created_on a date
            if i == len(pieces) - 1 and i > 0 and t in ("at", "on"):
                out.append(_canon("time" if t == "at" else "date"))
            else:
                out.append(_canon(t))
        self._tokens[norm] = out
        return out

    def weight(self, tok: str) -> float:
        w = math.log(1.0 + self._n / self._df.get(tok, 1))
        return w * 0.15 if _is_droppable(tok) else w

    def similarity(self, a: str, b: str) -> float:
        na, nb = normalize_name(a), normalize_name(b)
        if na == nb:
            return 1.0
        if na.replace("_", "") == nb.replace("_", ""):
            return 0.97  # only separators differ: "tripduration" / "Trip Duration"
        ta, tb = _merge_align(self.tokens(a), self.tokens(b))
        if not ta or not tb:
            return 0.0
        if ta == tb:
            return 0.95  # same words after abbreviations: "Fare_Amt" / "fare_amount"
        if sorted(ta) == sorted(tb):
            return 0.92  # same words, other order
        core_a = [t for t in ta if not _is_droppable(t)]
        core_b = [t for t in tb if not _is_droppable(t)]
        if core_a and core_a == core_b:
            dropped = len(ta) + len(tb) - 2 * len(core_a)
            return max(0.8, 0.93 - 0.02 * dropped)  # "tpep_pickup_datetime" / "pickup_datetime"
        dice = self._soft_dice(ta, tb)
        char = fuzz.ratio("".join(ta), "".join(tb)) / 100.0
        # char-level similarity only rescues near-identical spellings (typos); cap below the
        # canonical-equality levels so that fuzzy evidence alone never outranks exact words
        return min(0.94, max(dice, 0.85 * char if char >= 0.9 else 0.0))

    def _soft_dice(self, ta: list[str], tb: list[str]) -> float:
        wa = [self.weight(t) for t in ta]
        wb = [self.weight(t) for t in tb]
        pairs = sorted(
            ((_tok_sim(x, y), i, j) for i, x in enumerate(ta) for j, y in enumerate(tb)),
            key=lambda p: (-p[0] * (wa[p[1]] + wb[p[2]]), p[1], p[2]),
        )
        used_a: set[int] = set()
        used_b: set[int] = set()
        matched = 0.0
        for s, i, j in pairs:  # greedy token matching is exact enough for names of a few words
            if s <= 0 or i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            matched += s * (wa[i] + wb[j])
        total = sum(wa) + sum(wb)
        return matched / total if total else 0.0


def _merge_align(ta: list[str], tb: list[str]) -> tuple[list[str], list[str]]:
    """Split a token of one side that equals 2-3 adjacent tokens of the other ("datetime" vs
    "date", "time"), so both sides are compared word for word."""

    def expand(xs: list[str], ys: list[str]) -> list[str]:
        out: list[str] = []
        for t in xs:
            done = False
            for k in (2, 3):
                for s in range(0, len(ys) - k + 1):
                    joined = "".join(ys[s : s + k])
                    # compare stemmed too: "datetime" is canonically "datetim"
                    if len(t) > 3 and (joined == t or _canon(joined) == t):
                        out.extend(ys[s : s + k])
                        done = True
                        break
                if done:
                    break
            if not done:
                out.append(t)
        return out

    return expand(ta, tb), expand(tb, ta)
