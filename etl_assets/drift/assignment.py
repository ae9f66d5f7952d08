"""The global rename assignment: the Hungarian algorithm with a sound lower bound on each pair's regret.

By hand because the regret bound needs the solver's dual potentials, and scipy (whose
``linear_sum_assignment`` would solve the matching alone) is not a dependency of the project.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a drift check runs: loading the code location needs none
    import numpy as np


class Assignment:
    """Maximum-weight matching between rows and columns of a non-negative weight matrix (a pair
    of weight 0 is "no match"), by the Hungarian algorithm with numpy-vectorised inner loops.

    Keeps the LP dual potentials, which give a cheap, sound lower bound on a pair's regret.
    """

    def __init__(self, weights: list[list[float]]):
        import numpy as np

        n = len(weights)
        m = len(weights[0]) if n else 0
        self.n, self.m = n, m
        self.transposed = n > m
        if n == 0 or m == 0:  # nothing to match on one side
            self.pairs, self.total = [], 0.0
            self.cost, self.u, self.v, self.p = (
                np.zeros((0, 0)),
                np.zeros(1),
                np.zeros(1),
                np.zeros(1, dtype=int),
            )
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
        import numpy as np

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
    import numpy as np

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


def exact_regret(weights: list[list[float]], i: int, j: int, best: float) -> float:
    """(best total) - (best total without pair (i, j)), by solving again."""
    sub = [row[:] for row in weights]
    sub[i][j] = 0.0
    return best - Assignment(sub).total
