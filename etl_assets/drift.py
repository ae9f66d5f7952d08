"""Schema-drift detection with renamed-column recognition and a confidence score.

Pure Python (no Dagster): the ingest loop, the asset checks and the ``drift-check`` CLI all call
:func:`detect_drift` and act on the :class:`DriftReport` it returns.

How a rename is recognised
--------------------------
1. ``column_map`` from the config is fixed first: the user's word beats any heuristic (``{x: x}`` for a
   column not in the schema says "x is a column of its own": it is never a rename target).
2. Exact matches after :func:`normalize_name` (case, whitespace, punctuation, separators, camelCase) are
   fixed next, so a noisy candidate can never steal a column that is plainly present; then the renames
   ``accepted`` earlier, for the columns still open (a header naming the column beats a remembered rename,
   whose source column, if present too, is a column of its own).
   Header-matched columns whose values fit each other's last load far better than their own (value
   profiles, both ways round) are ``swapped``: the names alone cannot tell.
3. Every remaining (expected, observed) pair gets a confidence in [0, 1] that combines
   - name similarity: rapidfuzz over normalised, abbreviation-expanded, lightly stemmed tokens,
     weighted by how rare each token is in this header (a token shared by many columns, like
     ``station`` or ``rental``, says little about which column is which);
   - type compatibility of the sampled values with the expected type (when a sample is given);
   - value-profile similarity with the previous load (when ``previous_profiles`` is given).
   Evidence is combined in log-odds space, so each piece can push the score up or down.
4. The assignment is solved globally (Hungarian algorithm over log-odds weights), so one observed
   column maps to at most one expected column and a greedy first pick cannot starve a better pair.
5. Safety: a pair is only auto-applied when its confidence clears ``auto_map_threshold``, its name
   evidence is solid on its own, and the optimal assignment is clearly better than the best one that
   avoids the pair (the "regret" margin). A near-tie is capped below the auto threshold, i.e. it is
   at most a suggestion. A wrong silent rename is worse than a stopped load.
6. One confidence per pair: each pair's number is decided here, rounded once, and shown as is by the
   run's error, ``etl_schema_drift``, the asset check and ``drift-check``. A suggestion's observed column
   is not also "added"; observed columns that would land in one column are ``conflicts``.

Column names are data: they are only compared and reported here, never formatted into SQL.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz

__all__ = [
    "TYPES",
    "ColumnMapping",
    "ColumnProfile",
    "DriftReport",
    "detect_drift",
    "infer_type",
    "normalize_name",
    "profile_similarity",
    "shown",
]

TYPES = ("string", "integer", "float", "boolean", "timestamp", "date", "json")

DECISIONS = ("exact", "auto_mapped", "suggested", "unmapped", "explicit", "swapped")
# "swapped" is applied as the header says (drift.on_swap decides whether that may load)
APPLIED = ("exact", "explicit", "auto_mapped", "swapped")

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


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

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


# Abbreviations and inflections -> one canonical word (applied per token, before stemming).
_ABBREV: dict[str, str] = {
    "amt": "amount", "qty": "quantity", "quant": "quantity",
    "lat": "latitude", "lon": "longitude", "lng": "longitude", "long": "longitude",
    "dt": "datetime", "ts": "timestamp", "tstamp": "timestamp",
    "no": "number", "num": "number", "nbr": "number", "nr": "number", "nmbr": "number",
    "identifier": "id",
    "desc": "description", "descr": "description", "addr": "address", "cust": "customer",
    "fwd": "forward", "pct": "percent", "perc": "percent", "cnt": "count", "dist": "distance",
    "dur": "duration", "yr": "year", "tm": "time", "cd": "code", "tel": "phone",
    "telephone": "phone", "msg": "message", "dept": "department", "acct": "account",
    "txn": "transaction", "trx": "transaction", "ref": "reference", "avg": "average",
    "prev": "previous", "cat": "category", "loc": "location", "lvl": "level", "src": "source",
    "dst": "destination", "dest": "destination", "usr": "user", "idx": "index", "seq": "sequence",
    "tot": "total", "info": "information", "ver": "version",
    "start": "start", "started": "start", "starting": "start", "begin": "start", "began": "start",
    "beginning": "start",
    "end": "end", "ended": "end", "ending": "end", "stop": "end", "stopped": "end",
    "finish": "end", "finished": "end",
}

# Related (not identical) words: partial token credit. Deliberately below 1 so that a rename resting
# on a synonym needs the rest of the name to agree before it reaches the auto-map threshold.
_RELATED_WORDS: list[tuple[str, str, float]] = [
    ("date", "datetime", 0.85), ("time", "datetime", 0.85), ("timestamp", "datetime", 0.95),
    ("date", "timestamp", 0.85), ("time", "timestamp", 0.85), ("date", "time", 0.75),
    ("number", "id", 0.75), ("key", "id", 0.7), ("code", "id", 0.6),
    ("pickup", "start", 0.85), ("dropoff", "end", 0.85),
    ("from", "start", 0.8), ("origin", "start", 0.8), ("to", "end", 0.8),
    ("destination", "end", 0.8), ("gender", "sex", 0.9),
]

# Tokens that carry almost no identity: vendor/system prefixes (NYC TLC "tpep_", "lpep_"), filler
# words and ordinal group prefixes ("01 - Rental Details ..."). Dropping one costs a little.
_DROPPABLE = {"tpep", "lpep", "fhv", "fhvhv", "the", "of", "and", "a", "an", "in", "for", "by", "per"}

# Everyday column-name words, used only to split run-together names ("tripduration",
# "bikeid", "usertype") into tokens. Header tokens of the call are added per call.
_COMMON_WORDS = {
    "trip", "ride", "bike", "user", "type", "time", "date", "day", "year", "month", "week",
    "hour", "birth", "name", "code", "rate", "count", "total", "station", "start", "stop", "end",
    "id", "key", "duration", "distance", "amount", "price", "fee", "tax", "flag", "status",
    "city", "state", "zip", "country", "region", "first", "last", "full", "update", "store",
    "forward", "pickup", "dropoff", "payment", "vendor", "passenger", "fare", "tip", "toll",
    "member", "customer", "account", "order", "item", "product", "number", "value", "group",
    "level", "line", "address", "phone", "email", "postal", "event", "source", "rental",
    "latitude", "longitude", "datetime", "timestamp", "seconds", "min", "max", "sum", "mean",
    "height", "width", "weight", "size", "age", "gender", "sex", "score", "unit", "class",
}
_SHORT_PIECES = {"id", "at", "no", "dt", "ts"}  # the only 2-letter pieces a split may produce


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
    if tok in _ABBREV:
        return _stem(_ABBREV[tok])
    s = _stem(tok)
    return _stem(_ABBREV[s]) if s in _ABBREV else s


_RELATED: dict[frozenset, float] = {
    frozenset((_canon(a), _canon(b))): s for a, b, s in _RELATED_WORDS
}
_KNOWN = {w for w in _COMMON_WORDS} | set(_ABBREV) | set(_ABBREV.values())
_DROPPABLE_CANON = {_canon(t) for t in _DROPPABLE}


def _is_droppable(tok: str) -> bool:
    # "#01" marks a leading ordinal group prefix ("01 - Rental Details ..."); other digits are
    # identity ("address_1" vs "address_2") and are never dropped
    return tok in _DROPPABLE_CANON or tok.startswith("#")


def _split_compound(tok: str, vocab: set[str]) -> list[str]:
    """Split a run-together token into known words ('bikeid' -> ['bike', 'id']), else keep it."""
    if len(tok) < 5 or not tok.isalpha() or tok in _KNOWN:
        return [tok]

    def ok(piece: str) -> bool:
        return (len(piece) >= 3 or piece in _SHORT_PIECES) and piece in vocab and piece != tok

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


class _NameScorer:
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
                    joined = "".join(ys[s:s + k])
                    # compare stemmed too: "datetime" is canonically "datetim"
                    if len(t) > 3 and (joined == t or _canon(joined) == t):
                        out.extend(ys[s:s + k])
                        done = True
                        break
                if done:
                    break
            if not done:
                out.append(t)
        return out

    return expand(ta, tb), expand(tb, ta)


# --------------------------------------------------------------------------------------------------
# Values: types and profiles
# --------------------------------------------------------------------------------------------------

NULL_STRINGS = frozenset({"", "nan", "null", "none", "n/a", "na", "nat", "#n/a"})  # empty in a typed column
_BOOL_STRINGS = {"true", "false", "t", "f", "yes", "no"}
_INT_RE = re.compile(r"[+-]?(?:0|[1-9]\d*)")  # leading zeros ("00501") mark identifiers: string
# bare digit runs are integers (or, with leading zeros, identifiers), never floats
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?")
_ISO_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_US_DATE_RE = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:\s*[AaPp][Mm])?)?"
)
_TYPE_SHARE = 0.95  # a type is inferred when it covers this share of non-empty values


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip().casefold() in NULL_STRINGS
    if type(v).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(v, float):
        return math.isnan(v)
    try:
        ne = v != v  # numpy NaN scalars
        return isinstance(ne, bool) and ne
    except Exception:  # noqa: BLE001 - exotic objects compare however they like
        return False


def _kind(v: object) -> str:
    """The narrowest type one non-missing value fits."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "boolean"
    if isinstance(v, numbers.Integral):
        return "integer"
    if isinstance(v, (numbers.Real, Decimal)):
        return "float"
    if isinstance(v, datetime) or type(v).__name__ == "datetime64":
        return "timestamp"
    if isinstance(v, date):
        return "date"
    if isinstance(v, (dict, list, tuple)):
        return "json"
    s = str(v).strip()
    low = s.casefold()
    if low in _BOOL_STRINGS:
        return "boolean"
    if _INT_RE.fullmatch(s):
        return "integer"
    if _FLOAT_RE.fullmatch(s):
        return "float"
    if _ISO_PREFIX.match(s):
        try:
            parsed = datetime.fromisoformat(s.replace(" ", "T", 1) if len(s) > 10 else s)
        except ValueError:
            return "string"
        return "date" if len(s) == 10 and parsed == datetime(parsed.year, parsed.month, parsed.day) else "timestamp"
    m = _US_DATE_RE.fullmatch(s)
    if m and 1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31:
        return "timestamp" if m.group(4) else "date"
    if s[:1] in "[{":
        try:
            if isinstance(json.loads(s), (dict, list)):
                return "json"
        except ValueError:
            pass
    return "string"


def _infer(values: Iterable[object], share: float = _TYPE_SHARE) -> tuple[str, int]:
    kinds: dict[str, int] = {}
    n = 0
    for v in values:
        if _is_missing(v):
            continue
        k = _kind(v)
        kinds[k] = kinds.get(k, 0) + 1
        n += 1
    if n == 0:
        return "string", 0
    need = share * n
    ints, floats = kinds.get("integer", 0), kinds.get("float", 0)
    dates, stamps = kinds.get("date", 0), kinds.get("timestamp", 0)
    if kinds.get("boolean", 0) >= need:
        return "boolean", n
    if ints >= need:
        return "integer", n
    if ints + floats >= need:
        return "float", n
    if dates >= need:
        return "date", n
    if dates + stamps >= need:
        return "timestamp", n
    if kinds.get("json", 0) >= need:
        return "json", n
    return "string", n


def infer_type(values: Sequence[object], share: float = _TYPE_SHARE) -> str:
    """One of :data:`TYPES` for sampled values.

    CSV strings count by their content ("12" integer, "1.5" float, "true"/"false" boolean, ISO or
    US-style dates and timestamps, JSON objects/arrays); None, "", NaN and null-like strings are
    ignored; a type is chosen when it covers 95% of the remaining values (coercion quarantines the
    rest); all-empty gives "string". Pinning a schema asks for share=1.0: every value must fit.
    """
    return _infer(values, share)[0]


def _type_affinity(a: str, b: str) -> float:
    """How alike two column types are, for matching evidence (symmetric)."""
    if a == b:
        return 1.0
    pair = {a, b}
    if pair in ({"integer", "float"}, {"date", "timestamp"}):
        return 0.7
    if pair == {"boolean", "integer"}:
        return 0.3
    if "string" in pair:
        return 0.2  # text where numbers/dates were expected (or the reverse): likely another column
    return 0.0


def _coercible(expected: str, observed: str) -> bool:
    """Can values of the observed type be loaded into a column of the expected type?"""
    if expected == observed or expected == "string":
        return True
    return (expected, observed) in {("float", "integer"), ("timestamp", "date")}


@dataclass
class ColumnProfile:
    """Value profile of one column, kept from a load to compare the next load's columns with."""

    type: str
    null_fraction: float
    distinct_fraction: float
    mean_length: float
    numeric_min: float | None = None
    numeric_max: float | None = None

    @classmethod
    def of(cls, values: Sequence[object]) -> ColumnProfile:
        values = list(values)
        present = [v for v in values if not _is_missing(v)]
        typ = infer_type(present)
        texts = [str(v).strip() for v in present]
        lo = hi = None
        if typ in ("integer", "float"):
            nums = []
            for v in present:
                try:
                    x = float(v)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if math.isfinite(x):
                    nums.append(x)
            if nums:
                lo, hi = min(nums), max(nums)
        return cls(
            type=typ,
            null_fraction=(len(values) - len(present)) / len(values) if values else 0.0,
            distinct_fraction=len(set(texts)) / len(texts) if texts else 0.0,
            mean_length=sum(map(len, texts)) / len(texts) if texts else 0.0,
            numeric_min=lo,
            numeric_max=hi,
        )

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "null_fraction": self.null_fraction,
            "distinct_fraction": self.distinct_fraction,
            "mean_length": self.mean_length,
            "numeric_min": self.numeric_min,
            "numeric_max": self.numeric_max,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> ColumnProfile:
        def opt(x: object) -> float | None:
            return None if x is None else float(x)  # type: ignore[arg-type]

        typ = str(d.get("type", "string"))
        return cls(
            type=typ if typ in TYPES else "string",
            null_fraction=float(d.get("null_fraction", 0.0)),  # type: ignore[arg-type]
            distinct_fraction=float(d.get("distinct_fraction", 0.0)),  # type: ignore[arg-type]
            mean_length=float(d.get("mean_length", 0.0)),  # type: ignore[arg-type]
            numeric_min=opt(d.get("numeric_min")),
            numeric_max=opt(d.get("numeric_max")),
        )


def profile_similarity(a: ColumnProfile, b: ColumnProfile) -> float:
    """Similarity of two value profiles in [0, 1] (type, nulls, cardinality, length, numeric range)."""
    parts = [
        (0.3, _type_affinity(a.type, b.type)),
        (0.15, 1.0 - min(1.0, abs(a.null_fraction - b.null_fraction))),
        (0.2, 1.0 - min(1.0, abs(a.distinct_fraction - b.distinct_fraction))),
        (0.2, (min(a.mean_length, b.mean_length) + 1.0) / (max(a.mean_length, b.mean_length) + 1.0)),
    ]
    if None not in (a.numeric_min, a.numeric_max, b.numeric_min, b.numeric_max):
        lo, hi = max(a.numeric_min, b.numeric_min), min(a.numeric_max, b.numeric_max)  # type: ignore[type-var]
        span = max(a.numeric_max, b.numeric_max) - min(a.numeric_min, b.numeric_min)  # type: ignore[type-var, operator]
        overlap = (1.0 if lo <= hi else 0.0) if span == 0 else max(0.0, hi - lo) / span  # type: ignore[operator]
        parts.append((0.15, overlap))
    return sum(w * s for w, s in parts) / sum(w for w, _ in parts)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


@dataclass
class ColumnMapping:
    expected: str | None  # None for an added column
    observed: str | None  # None when unmapped
    # in [0, 1], rounded once (3 decimals) where it is computed; every output shows this very number
    confidence: float
    decision: str  # one of DECISIONS
    evidence: dict[str, float] = field(default_factory=dict)
    # top 3 observed candidates, ranked by the pair's own evidence, each with the pair's confidence
    candidates: list[tuple[str, float]] = field(default_factory=list)
    swapped_with: str | None = None  # "swapped": the observed column whose values fit this column

    @property
    def applied(self) -> bool:
        return self.decision in APPLIED


def shown(confidence: float | None) -> str:
    """A confidence as every message, table and log line prints it (the stored number, no re-rounding)."""
    return "" if confidence is None else f"{confidence:.3f}"


def _md(text: object) -> str:
    """A cell of a markdown table: names are data, so pipes, backticks and newlines are escaped."""
    s = "" if text is None else str(text)
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return " ".join(s.split()) if s.strip() else ("␠" * len(s) if s else "")


@dataclass
class DriftReport:
    mappings: list[ColumnMapping] = field(default_factory=list)  # one per expected column
    added: list[str] = field(default_factory=list)  # observed columns not mapped to any expected one
    removed: list[str] = field(default_factory=list)  # expected columns with no applied mapping
    type_changes: list[dict] = field(default_factory=list)  # {"column", "expected", "observed"}
    # observed columns (in `added` too) that would land in a column another one loads into: never loadable
    conflicts: list[dict] = field(default_factory=list)

    def observed_for(self, expected: str) -> str | None:
        """The observed column an expected column was mapped to (applied mappings only)."""
        return next((m.observed for m in self.mappings if m.expected == expected and m.applied), None)

    def rename_map(self) -> dict[str, str]:
        """observed -> expected for every applied mapping (exact, explicit, auto_mapped)."""
        return {m.observed: m.expected for m in self.mappings if m.applied and m.observed and m.expected}

    def has_drift(self) -> bool:
        """True when anything differs from the expected schema beyond spelling the config or the
        user has already settled (exact-after-normalisation and explicit mappings are not drift)."""
        return bool(
            self.added
            or self.removed
            or self.type_changes
            or self.conflicts
            or any(m.decision in ("auto_mapped", "swapped") for m in self.mappings)
        )

    def swapped(self) -> list[ColumnMapping]:
        return [m for m in self.mappings if m.decision == "swapped"]

    def missing(self, required: Iterable[str]) -> list[ColumnMapping]:
        """Mappings of required expected columns that are unmapped or only suggested."""
        req = set(required)
        return [m for m in self.mappings if m.expected in req and not m.applied]

    def to_json(self, source: str) -> dict:
        return {
            "source": source,
            "mappings": [
                {
                    "expected": m.expected,
                    "observed": m.observed,
                    "confidence": m.confidence,
                    "decision": m.decision,
                }
                for m in self.mappings
            ] + [  # a refused column is a decision too: one more row, as in the markdown table
                {"expected": c["column"], "observed": c["observed"], "confidence": None, "decision": "conflict"}
                for c in self.conflicts
            ],
            "added": list(self.added),
            "removed": list(self.removed),
            "type_changes": [dict(t) for t in self.type_changes],
        }

    def markdown(self) -> str:
        lines = [
            "| expected | observed | confidence | decision | evidence |",
            "| --- | --- | ---: | --- | --- |",
        ]
        for m in self.mappings:
            ev = ", ".join(f"{k}={v:.3f}" for k, v in m.evidence.items())  # as stored, like the confidence
            if m.swapped_with is not None:
                ev += f"; values fit {_md(m.swapped_with)}"
            elif not m.applied and m.candidates:
                ev = (ev + "; " if ev else "") + "candidates: " + ", ".join(
                    f"{_md(c)} ({shown(s)})" for c, s in m.candidates
                )
            lines.append(
                f"| {_md(m.expected)} | {_md(m.observed) if m.observed is not None else '—'} | "
                f"{shown(m.confidence)} | {m.decision} | {ev} |"
            )
        for name in self.added:
            lines.append(f"| — | {_md(name)} |  | added |  |")
        for c in self.conflicts:
            lines.append(f"| {_md(c['column'])} | {_md(c['observed'])} |  | conflict | "
                         f"{_md(c['mapped_from'])} loads into it too |")
        for t in self.type_changes:
            lines.append(
                f"| {_md(t['column'])} | {_md(self.observed_for(t['column']))} |  | type changed | "
                f"{_md(t['expected'])} -> {_md(t['observed'])} |"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------------


class _Assignment:
    """Maximum-weight matching between rows and columns of a non-negative weight matrix (a pair
    of weight 0 is "no match"), by the Hungarian algorithm with numpy-vectorised inner loops.

    Keeps the LP dual potentials, which give a cheap, sound lower bound on a pair's regret.
    """

    def __init__(self, weights: list[list[float]]):
        n = len(weights)
        m = len(weights[0]) if n else 0
        self.n, self.m = n, m
        self.transposed = n > m
        if n == 0 or m == 0:  # nothing to match on one side
            self.pairs, self.total = [], 0.0
            self.cost, self.u, self.v, self.p = np.zeros((0, 0)), np.zeros(1), np.zeros(1), np.zeros(1, dtype=int)
            return
        w = np.asarray(weights, dtype=float).reshape(n, m)
        if self.transposed:
            w = w.T
        rows = w.shape[0]
        # one zero-cost dummy column per row: any row may stay unmatched, so the dual potentials
        # describe the "partial matching" problem we actually solve
        self.cost = np.hstack([-w, np.zeros((rows, rows))]) if rows else np.zeros((0, 0))
        self.u, self.v, self.p = _hungarian_min(self.cost)
        pairs = []
        for j in range(1, w.shape[1] + 1):
            r = int(self.p[j])
            if r and w[r - 1, j - 1] > 0:
                pairs.append((r - 1, j - 1))
        self.pairs = [(b, a) for a, b in pairs] if self.transposed else pairs
        self.total = float(sum(weights[i][j] for i, j in self.pairs))

    def regret_lower_bound(self, i: int, j: int) -> float:
        """A lower bound on (best total) - (best total without pair (i, j)), for a matched pair.

        Forbidding the pair leaves the dual feasible; row i's potential can then rise by its
        smallest slack on the other columns (dummy included) and column j's by its smallest slack
        on the other rows (and up to 0), at most w_ij together. Every unit gained is a unit the
        best alternative assignment must lose, so the bound is never optimistic.
        """
        r, c = (j, i) if self.transposed else (i, j)
        a, u, v = self.cost, self.u, self.v
        row_slack = a[r] - u[r + 1] - v[1:]
        row_slack[c] = np.inf
        col_slack = a[:, c] - u[1:] - v[c + 1]
        col_slack[r] = np.inf
        d_row = float(row_slack.min()) if row_slack.size else 0.0
        d_col = min(float(-v[c + 1]), float(col_slack.min()) if col_slack.size else np.inf)
        return max(0.0, min(d_row + d_col, float(-a[r, c])))


def _hungarian_min(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min-cost assignment of every row of an n x m cost matrix (n <= m) to a distinct column.
    Returns potentials u (rows, 1-based), v (columns, 1-based) and p[j] = row matched to column j."""
    n, m = a.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used
            cur = np.empty(m + 1)
            cur[0] = np.inf
            cur[1:] = a[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv)
            minv[better] = cur[better]
            way[better] = j0
            masked = np.where(free, minv, np.inf)
            j1 = int(np.argmin(masked))
            delta = masked[j1]
            u[p[used]] += delta  # rows of used columns are distinct
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    return u, v, p


def _exact_regret(weights: list[list[float]], i: int, j: int, best: float) -> float:
    """(best total) - (best total without pair (i, j)), by solving again."""
    sub = [row[:] for row in weights]
    sub[i][j] = 0.0
    return best - _Assignment(sub).total


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------


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
    if not 0.0 <= suggest_threshold <= auto_map_threshold <= 1.0:
        raise ValueError(
            f"drift thresholds must satisfy 0 <= suggest_threshold ({suggest_threshold}) "
            f"<= auto_map_threshold ({auto_map_threshold}) <= 1"
        )
    exp_names = list(expected)
    obs_names = list(dict.fromkeys(str(o) for o in observed))
    sample = sample or {}
    previous_profiles = previous_profiles or {}
    fixed: dict[str, ColumnMapping] = {}
    used: set[str] = set()

    def explicit(origin: str, mapping: Mapping[str, str] | None) -> None:
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

    # 1. the config's column_map: the user's word beats everything, an exact name included
    explicit("column_map", column_map)

    # 2. exact after normalisation; a verbatim spelling wins over another that normalises equal. A
    # header that plainly names the column beats a rename remembered from an earlier file: the
    # remembered source column, if present too, is then a column of its own
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

    # 2b. renames applied (and remembered) before, for the columns still open
    explicit("accepted", accepted)

    # 3. score the remaining pairs
    rest_e = [e for e in exp_names if e not in fixed]
    rest_o = [o for o in obs_names if o not in used]
    scorer = _NameScorer(exp_names + obs_names)
    obs_types: dict[str, str] = {}
    obs_profiles: dict[str, ColumnProfile] = {}
    for o in obs_names:
        if o in sample:
            vals = list(sample[o])
            typ, n = _infer(vals)
            if n:
                obs_types[o] = typ
                obs_profiles[o] = ColumnProfile.of(vals)

    # 2c. headers that name columns plainly can still be swapped: the values tell (column_map is the
    # user's word and is not second-guessed)
    by_header = {e: m.observed for e, m in fixed.items() if "column_map" not in m.evidence and m.observed}
    for e, (partner, own, cross) in _swaps(by_header, previous_profiles, obs_profiles).items():
        m = fixed[e]
        own = round(own, 3)  # the confidence of a swapped pairing: how well its values fit the column
        fixed[e] = ColumnMapping(e, m.observed, own, "swapped",
                                 {**m.evidence, "profile": own, "swap_profile": round(cross, 3)},
                                 [(m.observed, own)], swapped_with=partner)

    conf = [[0.0] * len(rest_o) for _ in rest_e]
    evid: list[list[dict[str, float]]] = [[{} for _ in rest_o] for _ in rest_e]
    for i, e in enumerate(rest_e):
        prev = previous_profiles.get(e)
        declared = str(expected[e])
        # the previous load's profile knows the real type even when the declared one is "string"
        ref_type = prev.type if prev is not None else (declared if declared in TYPES and declared != "string" else None)
        for j, o in enumerate(rest_o):
            name = scorer.similarity(e, o)
            ev = {"name": round(name, 3)}
            logit = _logit(name)
            if ref_type is not None and o in obs_types:
                aff = _type_affinity(ref_type, obs_types[o])
                ev["type"] = aff
                logit += 0.4 if aff >= 1 else 0.0 if aff >= 0.7 else -1.0 if aff >= 0.3 else -2.5
            if prev is not None and o in obs_profiles:
                ps = profile_similarity(prev, obs_profiles[o])
                ev["profile"] = round(ps, 3)
                logit += max(-1.5, min(1.2, (ps - 0.6) * 3.0))
            conf[i][j] = round(_sigmoid(logit), 3)
            evid[i][j] = ev

    # 4. global assignment on log-odds weights: maximising the summed log-odds is the most likely
    # joint assignment, and (unlike summed confidences) never trades one sure pair for two weak ones
    floor = min(ASSIGN_FLOOR, suggest_threshold)
    base = _logit(floor)
    weights = [[(_logit(c) - base + 1e-6) if c >= floor else 0.0 for c in row] for row in conf]
    solved = _Assignment(weights)
    chosen = dict(solved.pairs)
    # exact regrets are cheap on small matrices; on wide ones the dual bound alone decides, which
    # can only err towards "suggested"
    exact_ok = len(rest_e) * len(rest_o) <= 1600

    # decide each assigned pair; the confidence it gets is the one number shown for it everywhere
    auto_cap = round(auto_map_threshold - 0.01, 3)
    suggest_cap = max(round(suggest_threshold - 0.001, 3), 0.0)
    decided: dict[int, tuple[str, float, dict[str, float]]] = {}
    for i, j in chosen.items():
        c, ev = conf[i][j], dict(evid[i][j])
        decision = "suggested"
        if c >= auto_map_threshold:
            regret = solved.regret_lower_bound(i, j)
            if regret < AUTO_MARGIN and exact_ok:
                regret = _exact_regret(weights, i, j, solved.total)
            ev["margin"] = round(regret, 3)
            if ev["name"] >= AUTO_NAME_FLOOR and regret >= AUTO_MARGIN:
                decision = "auto_mapped"
            else:
                # ambiguous or resting on values alone: report it below the auto threshold so the
                # number the user sees agrees with what was done
                c = min(c, auto_cap)
        decided[i] = ("unmapped" if decision == "suggested" and c < suggest_threshold else decision, c, ev)
    taken = {chosen[i]: i for i, (d, _, _) in decided.items() if d != "unmapped"}

    def pair_confidence(i: int, j: int) -> float:
        if chosen.get(i) == j:
            return decided[i][1]
        if taken.get(j, i) != i:
            return min(conf[i][j], suggest_cap)  # it went to a column it fits better: not credible here
        return min(conf[i][j], auto_cap)  # not applied, so never shown at an applying confidence

    results: dict[str, ColumnMapping] = dict(fixed)
    for i, e in enumerate(rest_e):
        # ranked by the pair's own evidence; each shown with the pair's confidence after the assignment
        order = sorted(range(len(rest_o)), key=lambda j: (-conf[i][j], j))
        candidates = [(rest_o[j], pair_confidence(i, j)) for j in order[:3]]
        decision, c, ev = decided.get(i, ("unmapped", 0.0, dict(evid[i][order[0]]) if order else {}))
        if decision == "unmapped":
            # the number of "no credible match" is its best candidate's, below drift.suggest_threshold
            results[e] = ColumnMapping(e, None, max((s for _, s in candidates), default=0.0), "unmapped", ev,
                                       candidates)
            continue
        results[e] = ColumnMapping(e, rest_o[chosen[i]], c, decision, ev, candidates)

    mappings = [results[e] for e in exp_names]
    applied_obs = {m.observed for m in mappings if m.applied}
    type_changes = []
    for m in mappings:
        if m.applied and m.observed in obs_types:
            exp_t = str(expected[m.expected])  # type: ignore[index]
            obs_t = obs_types[m.observed]
            if exp_t in TYPES and not _coercible(exp_t, obs_t):
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
    into = {normalize_name(str(m.expected)): (str(m.expected), str(m.observed))
            for m in mappings if m.applied and m.observed is not None}
    loaded = {m.observed for m in mappings if m.applied or m.decision == "suggested"}
    out = []
    for o in observed:
        hit = into.get(normalize_name(o)) if o not in loaded else None
        if hit is not None:
            out.append({"column": hit[0], "observed": o, "mapped_from": hit[1]})
    return out


def _swaps(by_header: Mapping[str, str], previous: Mapping[str, ColumnProfile],
           observed: Mapping[str, ColumnProfile]) -> dict[str, tuple[str, float, float]]:
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
    for start in best:  # keep the columns on a cycle of "fits the other better": a -> b -> a, a -> b -> c -> a
        path, e = [], start
        while e in best and e not in path:
            path.append(e)
            e = best[e][0]
        if e == start:
            out.update({x: (pairs[best[x][0]], own[x], best[x][1]) for x in path})
    return out
