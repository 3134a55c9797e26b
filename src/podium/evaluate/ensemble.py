"""Blending several experiments' predictions for the same rows ("members") into one, and its honest score.

Three methods, as Kaggle winners blend models and seeds:

- `mean`: p = (1/M) sum_m p_m.
- `rank` (roc_auc only, binary or multilabel): each member's columns replaced by their scaled ranks
  r = (rank - 1) / (n - 1) (scipy.stats.rankdata, average ties; n == 1 gives 0.5), then averaged. Ranks are
  taken within the array given: the OOF within the OOF, a test set within the test set. Ranks are not
  probabilities, so any other metric is refused; multiclass roc_auc is refused too, since it scores softmax
  rows (`metrics.score` normalises each row to sum 1, which rank rows do not).
- `weights`: p = sum_m w_m p_m with w_m >= 0, sum w_m = 1, on the simplex grid of multiples of 1/steps,
  fitted to optimise the metric (`metrics.higher_is_better` gives the direction). With at most MAX_GRID grid
  points (C(steps + M - 1, M - 1): M <= 4 at steps 20) the grid is searched exhaustively; with more members by
  hill climbing (Caruana et al. 2004, ensemble selection with replacement) then a pairwise local search.
  Ties (scores equal to TIE_DIGITS decimals) go to the weights closest to the plain mean (squared distance),
  then to the first found: deterministic.

Blend weights fitted on the OOF and scored on the same OOF are optimistic: they have seen the rows they are
judged on. `score_blend` scores them nested over the folds: fold k's rows are blended with weights fitted on the
other folds' rows. The weights fitted on all rows are what a submission applies (`blend` on the members' test
predictions); the in-sample score (fitted and scored on all rows) is reported too, labelled as such. mean and
rank fit nothing, so their nested and in-sample scores are the same figure.

Pure numpy/scipy: no I/O, no torch. Every score is `metrics.score`, one call per candidate: a fit costs
(grid points or hill-climbing moves) x one score (about 1,800 scores for 4 members at steps 20).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from podium.evaluate.metrics import higher_is_better, score

METHODS = ("mean", "rank", "weights")
RANK_METRICS = ("roc_auc",)  # metrics that only see the order of the predictions
STEPS = 20  # weights are multiples of 1/STEPS; more steps: finer weights, slower fits, more overfitting
MAX_GRID = 5000  # search the weight grid exhaustively up to this many points, else hill-climb
TIE_DIGITS = 12  # scores equal to this many decimals are a tie (sklearn sums differ in the last bits)


# ---------------------------------------------------------------------------------------------
# Checks


def check_method(method: str, metric: str, task: str) -> None:
    """ValueError (one line) unless `method` can blend for `metric` on `task`."""
    if method not in METHODS:
        raise ValueError(f"blend method {method!r} is not one of {METHODS}")
    if method == "rank" and metric not in RANK_METRICS:
        raise ValueError(f"rank blending is only for rank-based metrics {RANK_METRICS}, not {metric}: "
                         f"ranks are not probabilities (use mean or weights)")
    if method == "rank" and task == "multiclass":
        raise ValueError("rank blending is not for multiclass roc_auc: it scores softmax rows, and rank rows "
                         "are not (use mean or weights)")


def _stack(members) -> np.ndarray:
    """The members as one float array (M, n, ...), after the input checks."""
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"blending needs at least 2 members, got {len(members)}")
    arrays = [np.asarray(m, dtype=np.float64) for m in members]
    shapes = [a.shape for a in arrays]
    if len(set(shapes)) > 1:
        raise ValueError(f"blend members must all have the same shape, got {shapes}")
    stacked = np.stack(arrays)
    if stacked.ndim < 2 or stacked.shape[1] == 0:
        raise ValueError(f"blend members must be (n,) or (n, C) arrays with n >= 1, got shape {shapes[0]}")
    bad = [i for i, a in enumerate(arrays) if not np.all(np.isfinite(a))]
    if bad:
        raise ValueError(f"blend members {bad} contain NaN or infinity")
    return stacked


def _check_weights(weights, n_members: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n_members or not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1) > 1e-6:
        raise ValueError(f"blend weights must be {n_members} non-negative numbers summing to 1, got {w.tolist()}")
    return w


# ---------------------------------------------------------------------------------------------
# Blending


def _ranks0(p: np.ndarray) -> np.ndarray:
    """Each column's ranks minus 1 (average ties): multiples of 1/2, so their sums are exact."""
    from scipy.stats import rankdata

    return rankdata(p, axis=0) - 1


def rank_columns(probs: np.ndarray) -> np.ndarray:
    """Each column's ranks within the array, scaled to [0, 1]: (rank - 1) / (n - 1), average ties; n == 1: 0.5."""
    p = np.asarray(probs, dtype=np.float64)
    n = len(p)
    if n == 1:
        return np.full_like(p, 0.5)
    return _ranks0(p) / (n - 1)


def blend(members, weights=None, method: str = "mean") -> np.ndarray:
    """The members blended, in their shape: sum_m w_m p_m (weights None: equal), for `rank` of each member's
    `rank_columns` (ranked within these rows: apply it to the test predictions as a whole).
    `mean` takes no weights other than equal ones; `weights` and `rank` take any on the simplex.
    Equal weights are computed as np.mean is (sum, then divide; for rank the sum of the unscaled ranks, which is
    exact): rows whose values tie in every member tie in the blend, as rank-based metrics need."""
    if method not in METHODS:
        raise ValueError(f"blend method {method!r} is not one of {METHODS}")
    stacked = _stack(members)
    n_members, n = len(stacked), stacked.shape[1]
    equal = np.full(n_members, 1 / n_members)
    w = equal if weights is None else _check_weights(weights, n_members)
    is_equal = np.allclose(w, equal, rtol=0, atol=1e-9)
    if method == "mean" and not is_equal:
        raise ValueError(f"blend method 'mean' takes equal weights, got {w.tolist()} (use method 'weights')")
    if method == "rank" and n == 1:
        return np.full(stacked.shape[1:], 0.5)
    if method == "rank":
        return _weighted(w, np.stack([_ranks0(p) for p in stacked]), float(n - 1))
    return _weighted(w, stacked)


def _weighted(w: np.ndarray, stacked: np.ndarray, divisor: float = 1.0) -> np.ndarray:
    """sum_m w_m stacked_m / divisor; equal weights as np.mean computes them (sum, then one division)."""
    if np.allclose(w, 1 / len(w), rtol=0, atol=1e-9):
        return stacked.sum(axis=0) / (len(w) * divisor)
    return np.tensordot(w, stacked, axes=1) / divisor


# ---------------------------------------------------------------------------------------------
# Fitting the weights


def grid_size(n_members: int, steps: int = STEPS) -> int:
    """Points on the simplex grid of multiples of 1/steps for n_members weights: C(steps + M - 1, M - 1)."""
    return math.comb(steps + n_members - 1, n_members - 1)


def _grid(n_members: int, steps: int):
    """Every count vector of n_members non-negative integers summing to steps (stars and bars)."""
    for bars in itertools.combinations(range(steps + n_members - 1), n_members - 1):
        edges = (-1, *bars, steps + n_members - 1)
        yield tuple(b - a - 1 for a, b in zip(edges[:-1], edges[1:], strict=True))


def _objective(stacked: np.ndarray, y: np.ndarray, metric: str, task: str, judge=None):
    """key(counts) -> (better-is-larger score, minus squared distance to the plain mean), compared as tuples:
    the best score, and among tied scores the weights closest to the mean. Cached; NaN scores rank last.
    `judge(y, blended) -> predictions`: what the blend is scored after (e.g. a temperature fitted on these
    rows), so the weights are chosen for the predictions a submission will hold."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    mean = 1 / len(stacked)
    cache: dict[tuple[int, ...], tuple[float, float]] = {}

    def key(counts: tuple[int, ...]) -> tuple[float, float]:
        if counts not in cache:
            w = np.asarray(counts, dtype=np.float64) / sum(counts)
            blended = _weighted(w, stacked)
            s = score(metric, y, judge(y, blended) if judge is not None else blended, task)
            s = -np.inf if np.isnan(s) else round(sign * s, TIE_DIGITS)
            cache[counts] = (s, -round(float(np.sum((w - mean) ** 2)), TIE_DIGITS))
        return cache[counts]

    return key


def _rescale(counts: tuple[int, ...], steps: int) -> tuple[int, ...]:
    """counts * steps / sum(counts), rounded to integers summing to steps (largest remainder, then lower index)."""
    exact = np.asarray(counts, dtype=np.float64) * steps / sum(counts)
    out = np.floor(exact).astype(np.int64)
    order = sorted(range(len(out)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:steps - int(out.sum())]:
        out[i] += 1
    return tuple(int(c) for c in out)


def _hill_climb(key, n_members: int, steps: int) -> tuple[int, ...]:
    """Caruana et al. (2004) ensemble selection with replacement, on counts: start from the best single member
    (count 1), add one count to whichever member improves the score most, until `steps` counts or no addition
    improves. Counts stopped short of `steps` are rescaled to the 1/steps grid (or the best single member at
    weight 1, whichever is better). Then a local search moves one count (1/steps of weight) from one member to
    another, the best move first, while it improves the key (score, then closeness to the mean): a strict
    total order on a finite grid, so it ends. The result is never worse than the best single member."""
    unit = [tuple(int(i == j) for j in range(n_members)) for i in range(n_members)]
    counts = max(unit, key=key)
    while sum(counts) < steps:
        best = max((tuple(c + e for c, e in zip(counts, u, strict=True)) for u in unit), key=key)
        if key(best)[0] <= key(counts)[0]:
            break
        counts = best
    single = tuple(steps * c for c in max(unit, key=key))
    counts = max((_rescale(counts, steps), single), key=key)
    while True:
        moves = [tuple(c - (k == i) + (k == j) for k, c in enumerate(counts))
                 for i in range(n_members) if counts[i] > 0 for j in range(n_members) if j != i]
        best = max(moves, key=key)
        if key(best) <= key(counts):
            return counts
        counts = best


def fit_weights(members, y, metric: str, task: str, steps: int = STEPS, judge=None) -> np.ndarray:
    """The weights (M,) on the 1/steps simplex grid that optimise `metric` of the weighted mean on these rows:
    exhaustive when the grid has at most MAX_GRID points, else hill climbing (`_hill_climb`). Ties: closest to
    the plain mean, then the first in the grid's order (the count vectors in increasing lexicographic order)."""
    stacked = _stack(members)
    return _fit(stacked, np.asarray(y), metric, task, steps, judge)[0]


def _fit(stacked: np.ndarray, y: np.ndarray, metric: str, task: str, steps: int, judge=None
         ) -> tuple[np.ndarray, str]:
    if steps < 1:
        raise ValueError(f"blend steps must be a positive integer, got {steps}")
    if len(y) != stacked.shape[1]:
        raise ValueError(f"y and the blend members need one row each: {len(y)} and {stacked.shape[1]}")
    n_members = len(stacked)
    key = _objective(stacked, y, metric, task, judge)
    if grid_size(n_members, steps) <= MAX_GRID:
        counts, search = max(_grid(n_members, steps), key=key), "exhaustive"
    else:
        counts, search = _hill_climb(key, n_members, steps), "hill_climbing"
    return np.asarray(counts, dtype=np.float64) / steps, search


# ---------------------------------------------------------------------------------------------
# Honest scoring


def _nested(stacked, y, fold, metric, task, method, steps, judge=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The blended OOF (each fold's rows blended with weights fitted without that fold) and the weights of each
    fold, in sorted fold order."""
    folds = np.unique(fold)
    n_members = len(stacked)
    if method != "weights":  # nothing fitted: the nested blend is the in-sample one (rank: over all OOF rows)
        equal = np.full(n_members, 1 / n_members)
        return blend(list(stacked), equal, method), [equal.copy() for _ in folds]
    out = np.empty(stacked.shape[1:], dtype=np.float64)
    fold_weights = []
    for k in folds:
        held = fold == k
        if held.all():
            raise ValueError("nested blend weights need at least two folds")
        w, _ = _fit(stacked[:, ~held], y[~held], metric, task, steps, judge)
        out[held] = _weighted(w, stacked[:, held])
        fold_weights.append(w)
    return out, fold_weights


def _inputs(members, y, fold, metric, task, method):
    check_method(method, metric, task)
    stacked = _stack(members)
    y, fold = np.asarray(y), np.asarray(fold)
    n = stacked.shape[1]
    if len(y) != n or len(fold) != n:
        raise ValueError(f"y, fold and the blend members need one row each: {len(y)}, {len(fold)}, {n}")
    return stacked, y, fold


def score_blend(members, y, fold, metric: str, task: str, method: str = "weights", steps: int = STEPS,
             judge=None) -> tuple[dict, np.ndarray]:
    """(report, blended OOF). The report is JSON-ready:
    `weights`: fitted on all rows, what a submission applies with `blend` (mean/rank: equal weights);
    `score`, `fold_scores`: nested (every row blended with weights fitted without its fold), the honest CV
    figure, fold scores in the order of `folds` (sorted); `fold_weights`: the weights each fold was blended with;
    `score_in_sample`: weights fitted and scored on all rows, optimistic, for reference (mean/rank: = score);
    `member_scores`: each member alone on all rows; `search`: 'exhaustive', 'hill_climbing' or 'none'.
    The blended OOF is the nested one that `score` scores, in the members' shape.
    `judge`: see `_objective`; the weights are fitted for the judged blend (every reported score is of the
    blend itself: the caller judges the returned OOF nested, as it does an experiment's)."""
    stacked, y, fold = _inputs(members, y, fold, metric, task, method)
    n_members = len(stacked)
    if method == "weights":
        weights, search = _fit(stacked, y, metric, task, steps, judge)
    else:
        weights, search = np.full(n_members, 1 / n_members), "none"
    oof, fold_weights = _nested(stacked, y, fold, metric, task, method, steps, judge)
    folds = np.unique(fold)
    report = {
        "method": method,
        "metric": metric,
        "search": search,
        "steps": int(steps) if method == "weights" else None,
        "weights": [float(v) for v in weights],
        "score": score(metric, y, oof, task),
        "fold_scores": [score(metric, y[fold == k], oof[fold == k], task) for k in folds],
        "folds": [k.item() for k in folds],
        "fold_weights": [[float(v) for v in w] for w in fold_weights],
        "score_in_sample": score(metric, y, blend(list(stacked), weights, method), task),
        "member_scores": [score(metric, y, p, task) for p in stacked],
    }
    return report, oof
