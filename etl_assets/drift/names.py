"""Column-name similarity: normalisation, abbreviation expansion, light stemming and token rarity.

Names are data: they are only compared here, never formatted into SQL.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from .vocabulary import ABBREVIATIONS, COMMON_WORDS, DROPPABLE, RELATED_WORDS, SHORT_PIECES


def _ratio(a: str, b: str) -> float:
    from rapidfuzz import fuzz  # on the first comparison of two names: a header that matches needs none

    return float(fuzz.ratio(a, b))


# Name-evidence levels of the weaker kinds of match (the word-for-word levels are in NameScorer.similarity).
NUMBER_ONLY = 0.82  # "trips" / "trip": below auto_map_threshold on its own
CONTAINMENT_BASE, CONTAINMENT_SPAN = (
    0.7,
    0.22,
)  # "Region" / "Region or territory": 0.7 .. 0.92 by weight carried
CODE_STRONG, CODE_WEAK = (
    0.78,
    0.7,
)  # "wspd" / "wind_speed" (initials, opening consonants) vs any fitting letters

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
        r = _ratio(a, b) / 100.0
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
        # a possessive's "s" ("Customer's Phone") is not a word of its own
        raw = [t for i, t in enumerate(norm.split("_")) if t and not (i and t == "s")]
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
        joined_a, joined_b = na.replace("_", ""), nb.replace("_", "")
        if joined_a == joined_b:
            return 0.97  # only separators differ: "tripduration" / "Trip Duration"
        ta, tb = _merge_align(self.tokens(a), self.tokens(b))
        if not ta or not tb:
            return 0.0
        if ta == tb:
            # same words after abbreviations ("Fare_Amt" / "fare_amount"); a difference in grammatical number
            # alone ("trips" / "trip") is as often a count beside an identifier: it needs other evidence
            return NUMBER_ONLY if _number_only(na, nb) else 0.95
        if sorted(ta) == sorted(tb):
            return 0.92  # same words, other order
        core_a = [t for t in ta if not _is_droppable(t)]
        core_b = [t for t in tb if not _is_droppable(t)]
        if core_a and core_a == core_b:
            dropped = len(ta) + len(tb) - 2 * len(core_a)
            return max(0.8, 0.93 - 0.02 * dropped)  # "tpep_pickup_datetime" / "pickup_datetime"
        dice = self._soft_dice(ta, tb)
        char = _ratio("".join(ta), "".join(tb)) / 100.0
        # char-level similarity only rescues near-identical spellings (typos); cap below the
        # canonical-equality levels so that fuzzy evidence alone never outranks exact words
        fuzzy = max(dice, 0.85 * char if char >= 0.9 else 0.0, _truncated(joined_a, joined_b))
        return min(0.94, max(fuzzy, self.containment(core_a, core_b), self.code(na, nb)))

    def number_only(self, a: str, b: str) -> bool:
        """The names differ only in a word's grammatical number ("trips" / "trip")."""
        na, nb = normalize_name(a), normalize_name(b)
        return na != nb and _number_only(na, nb)

    def containment(self, ta: list[str], tb: list[str]) -> float:
        """One name's words all inside the other's, in order, plus qualifiers ("Region" / "Region or
        territory", "Phone" / "Customer's Phone"): the higher, the more of the longer name they carry."""
        short, long_ = sorted((ta, tb), key=len)
        if len(short) == len(long_) == 1:
            return _letters_inside(short[0], long_[0])
        if not short or not 0 < len(long_) - len(short) <= 2 or not _in_order(short, long_):
            return 0.0
        carried = sum(self.weight(t) for t in short) / max(sum(self.weight(t) for t in long_), 1e-9)
        extra = max(0, len(long_) - len(short) - 2)  # a qualifier or two, not a sentence around the name
        return round(CONTAINMENT_BASE + CONTAINMENT_SPAN * carried - 0.05 * extra, 3)

    def code(self, na: str, nb: str) -> float:
        """A short code of one name spelled out by the other ("tmp" / "temperature", "wspd" / "wind_speed"),
        read off the letters alone: never more than a suggestion's worth without other evidence."""
        short, long_ = sorted((na, nb), key=len)
        if "_" in short or not short.isalpha() or not 2 <= len(short) <= 5:
            return 0.0
        words = [w for w in long_.split("_") if w]
        return abbreviation_score(short, words)

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


def _number_only(na: str, nb: str) -> bool:
    """Two names that differ only in a word's grammatical number ("trips" / "trip", "Cases" / "case")."""
    a, b = na.split("_"), nb.split("_")
    return len(a) == len(b) and all(x == y or _stem(x) == _stem(y) for x, y in zip(a, b, strict=True))


def _truncated(a: str, b: str) -> float:
    """One name cut short from the other, separators aside ("GNPDEFL" / "GNP.deflator", "condomin" /
    "condominium"): six letters at least, and at least 60% of the longer name."""
    short, long_ = sorted((a, b), key=len)
    if len(short) < 6 or not long_.startswith(short) or len(short) < 0.6 * len(long_):
        return 0.0
    return CONTAINMENT_BASE + 0.05


def _letters_inside(a: str, b: str) -> float:
    """One run-together word inside the other ("price" in "libprice", "size" in "psize"): a qualifier glued
    on. Four letters at least, and at least half the longer word."""
    short, long_ = sorted((a, b), key=len)
    if len(short) < 4 or not short.isalpha() or short not in long_ or len(short) * 2 < len(long_):
        return 0.0
    return CONTAINMENT_BASE


def _in_order(short: list[str], long_: list[str]) -> bool:
    """Every word of `short` matches a word of `long_` (as the same canonical word), in the same order."""
    it = iter(long_)
    return all(any(_tok_sim(t, u) >= 0.95 for u in it) for t in short)


_VOWELS = set("aeiou")


def abbreviation_score(code: str, words: list[str]) -> float:
    """How well `code` abbreviates the words: its letters in order, starting at the first word's first letter,
    touching every word. Best when each word gives a run of its opening letters or consonants ("ws" / wind
    speed, "wspd" / wind speed, "tmp" / temperature, "prcp" / precipitation); 0 when the letters do not fit."""
    text = "".join(words)
    if len(text) < len(code) + 2 or code[0] != text[0] or (len(code) < 3 and len(words) < 2):
        return 0.0  # two letters for one word ("id" / "identity") say too little
    if _pieces_fit(code, words):
        return CODE_STRONG
    at = -1
    for ch in code:  # any fitting letters, in order
        at = text.find(ch, at + 1)
        if at < 0:
            return 0.0
    return CODE_WEAK if len(code) >= 3 else 0.0


def _pieces_fit(code: str, words: list[str]) -> bool:
    """`code` cut into one non-empty piece per word, each piece the opening of the word or of its consonant
    skeleton (first letter, then its consonants)."""
    if not words:
        return not code
    w, rest = words[0], words[1:]
    skeleton = w[0] + "".join(ch for ch in w[1:] if ch not in _VOWELS)
    for k in range(1, len(code) - len(rest) + 1):
        piece = code[:k]
        if (w.startswith(piece) or skeleton.startswith(piece)) and _pieces_fit(code[k:], rest):
            return True
    return False


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
