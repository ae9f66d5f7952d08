"""Schema-drift detection with renamed-column recognition and a confidence score.

Pure Python (no Dagster): the ingest loop, the asset checks and the ``drift-check`` CLI all call
:func:`detect_drift` and act on the :class:`DriftReport` it returns. Modules: ``names`` (name similarity;
its word lists in ``vocabulary``), ``structure`` (position and sibling evidence), ``profiles`` (value
profiles), ``assignment`` (the global matching), ``report`` (the report, its Markdown and JSON), ``detect``
(the steps below).

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
     ``station`` or ``rental``, says little about which column is which); one name inside the other
     (``Region`` / ``Region or territory``); a short code spelled out (``wspd`` / ``wind_speed``); a change
     that sibling pairs share (``...DesireNextYear`` -> ``...WantToWorkWith`` on several columns);
   - position: alone in the same gap between paired neighbours (a reorder is never a rename);
   - type compatibility of the sampled values with the expected type (when a sample is given);
   - value evidence against the previous load (when ``previous_profiles`` is given): profile
     similarity, the distribution or frequent values, and incompatibility (a small count vs an identifier).
   Evidence is combined in log-odds space, so each piece can push the score up or down. Position or
   values alone make a suggestion at most.
4. The assignment is solved globally (Hungarian algorithm over log-odds weights), so one observed
   column maps to at most one expected column and a greedy first pick cannot starve a better pair.
5. Safety: a pair is only auto-applied when its confidence clears ``auto_map_threshold``, its name
   evidence is solid on its own, the values (when compared) do not contradict it, a name differing only
   in grammatical number is confirmed by values, and the optimal assignment is clearly better than the
   best one that avoids the pair (the "regret" margin). Anything short of that is capped below the auto
   threshold, i.e. it is at most a suggestion. A wrong silent rename is worse than a stopped load.
6. One confidence per pair: each pair's number is decided here, rounded once, and shown as is by the
   run's error, ``etl_schema_drift``, the asset check and ``drift-check``. A suggestion's observed column
   is not also "added"; observed columns that would land in one column are ``conflicts``.

Column names are data: they are only compared and reported here, never formatted into SQL.
"""

from .detect import detect_drift
from .names import normalize_name
from .profiles import ColumnProfile, profile_similarity
from .report import ColumnMapping, DriftReport, shown

__all__ = [
    "ColumnMapping",
    "ColumnProfile",
    "DriftReport",
    "detect_drift",
    "normalize_name",
    "profile_similarity",
    "shown",
]
