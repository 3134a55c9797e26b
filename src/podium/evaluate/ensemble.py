"""Blending several experiments' predictions for the same rows ("members") into one, and its honest score.

Three methods, as Kaggle winners blend models and seeds:

- `mean`: p = (1/M) sum_m p_m.
- `rank` (roc_auc only, binary or multilabel): each member's columns replaced by their scaled ranks
  r = (rank - 1) / (n - 1) (scipy.stats.rankdata, average ties; n == 1 gives 0.5), then averaged. Ranks are
  taken within the array given: the OOF within the OOF, a test set within the test set. Ranks are not
  probabilities, so any other metric is refused; multiclass roc_auc is refused too, since it scores softmax
  rows (`metrics.score` normalises each row to sum 1, which rank rows do not).
- `weights`: p = sum_m w_m p_m with w_m >= 0, sum w_m = 1, fitted to minimise a smooth proper score of the
  blend, whatever the competition metric: the log loss for probabilities (after a temperature fitted with the
  weights, so that a member is weighted for what it knows, not for how confident it is), the squared error for
  a regression. Then shrunk toward equal weights: w = s/M + (1 - s) w_fit, with the share s of the plain mean
  one of MEAN_SHARES (1: the mean, 0: the fitted weights), chosen by blends nested over the folds: a share
  below 1 only where its proper score beats the mean's by more than GAIN_Z standard errors.

Why not search the weights on the metric itself: a metric such as accuracy is a step function of the weights;
its optimum on a few thousand rows chases ties and single images, and two equally good seeds then blend worse,
scored honestly, than their plain mean. A smooth score has one optimum that moves little from fold to fold,
and the significance test keeps the mean wherever fitting does not clearly pay.

Blend weights fitted on the OOF and scored on the same OOF are optimistic: they have seen the rows they are
judged on. `score_blend` scores them nested over the folds: fold k's rows are blended with weights fitted on the
other folds' rows, shrunk by a share chosen on the other folds' rows too (each candidate share judged by a
blend nested over those folds): the choice never sees fold k. The weights fitted on all rows, shrunk by the
share chosen the same way on all rows, are what a submission applies (`blend` on the members' test
predictions); the in-sample score (fitted and scored on all rows) is reported too, labelled as such. mean and
rank fit nothing, so their nested and in-sample scores are the same figure.

Pure numpy/scipy: no I/O, no torch. A fit is a small smooth optimisation (M + 1 variables); nested over K
folds a blend costs K (K - 1) + K + 1 fits.
"""

from __future__ import annotations

import numpy as np

from podium.evaluate.metrics import score
from podium.evaluate.postprocess import EPS, T_BOUNDS, fit as fit_post

METHODS = ("mean", "rank", "weights")
RANK_METRICS = ("roc_auc",)  # metrics that only see the order of the predictions
# Candidate shares of the plain mean in the weights, most shrunk first (the order ties are broken in): the mean,
# halfway, the fitted weights.
MEAN_SHARES = (1.0, 0.5, 0.0)
# Fitted weights replace the mean only where their nested blend's proper score is better by this many standard
# errors of the per-row difference (one-sided, a false alarm in about 1 of 700 comparisons): equally good members
# (seeds) fit weights near equal, and their nested differences from the mean are noise.
GAIN_Z = 3.0
MIN_FOLDS = 3  # the share is chosen on the other folds' rows by a blend nested over them: two or more folds
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


def _proper_score(stacked: np.ndarray, y: np.ndarray, task: str):
    """(f, n_vars): f(x) -> (value, gradient) of the proper score of the blend with weights x[:M] and, for
    classification, temperature exp(x[M]): the log loss of softmax(log(p) / T) (multiclass) or of
    sigmoid(logit(p) / T) per column (binary, multilabel: the mean over the columns, as `metrics.score`), the
    mean squared error for a regression. Probabilities are clipped to [EPS, 1 - EPS] as the temperature's own
    fit does; the gradient treats the clip as absent (it moves only rows already at the bounds)."""
    m = len(stacked)
    n = stacked.shape[1]
    if task == "regression":
        flat, t = stacked.reshape(m, n), np.asarray(y, dtype=np.float64).reshape(n)

        def f(x):
            r = x[:m] @ flat - t
            return float(np.mean(r ** 2)), 2 * flat @ r / n
        return f, m
    if task == "multiclass":
        rows, onehot = np.arange(n), np.eye(stacked.shape[2])[np.asarray(y, dtype=np.int64)]

        def f(x):
            p = np.clip(np.tensordot(x[:m], stacked, axes=1), EPS, 1 - EPS)
            s, logp = np.exp(-x[m]), np.log(p)
            z = s * logp
            z -= z.max(axis=1, keepdims=True)
            q = np.exp(z)
            q /= q.sum(axis=1, keepdims=True)
            value = float(np.mean(-np.log(np.clip(q[rows, y.astype(np.int64)], 1e-300, None))))
            g = s * (q - onehot) / p / n
            dw = np.tensordot(stacked, g, axes=([1, 2], [0, 1]))
            du = -s * float(np.sum((q - onehot) * logp)) / n
            return value, np.append(dw, du)
        return f, m + 1
    cols = stacked.reshape(m, n, -1)
    target = np.asarray(y, dtype=np.float64).reshape(n, -1)
    size = target.size

    def f(x):
        p = np.clip(np.tensordot(x[:m], cols, axes=1), EPS, 1 - EPS)
        s, logit = np.exp(-x[m]), np.log(p) - np.log1p(-p)
        lo = s * logit
        value = float(np.mean(np.logaddexp(0, lo) - target * lo))
        g = (1 / (1 + np.exp(-lo)) - target) / size
        dw = np.tensordot(cols, g * s / (p * (1 - p)), axes=([1, 2], [0, 1]))
        du = -s * float(np.sum(g * logit))
        return value, np.append(dw, du)
    return f, m + 1


def _fit(stacked: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """The weights (M,) on the simplex minimising `_proper_score` (jointly with the temperature), by SLSQP from
    equal weights. The score is convex in the weights at a fixed temperature, so the optimum is the global one
    up to the solver's tolerance; never worse than equal weights (kept if the solver ends above them)."""
    from scipy.optimize import minimize

    if len(y) != stacked.shape[1]:
        raise ValueError(f"y and the blend members need one row each: {len(y)} and {stacked.shape[1]}")
    m = len(stacked)
    f, n_vars = _proper_score(stacked, np.asarray(y), task)
    equal = np.full(m, 1 / m)
    x0 = np.append(equal, np.zeros(n_vars - m))
    bounds = [(0.0, 1.0)] * m + [tuple(np.log(T_BOUNDS))] * (n_vars - m)
    grad = np.append(np.ones(m), np.zeros(n_vars - m))
    simplex = {"type": "eq", "fun": lambda x: np.sum(x[:m]) - 1, "jac": lambda x: grad}
    res = minimize(f, x0, jac=True, method="SLSQP", bounds=bounds, constraints=[simplex],
                   options={"ftol": 1e-12, "maxiter": 1000})
    w = np.clip(res.x[:m], 0.0, None)
    w = w / w.sum() if w.sum() > 0 else equal
    if not f(np.append(w, res.x[m:]))[0] <= f(x0)[0]:
        return equal
    return w


def fit_weights(members, y, task: str) -> np.ndarray:
    """The weights (M,) on the simplex that minimise the blend's log loss after a temperature fitted with them
    (classification) or its squared error (regression), on these rows; not shrunk (see `score_blend`)."""
    return _fit(_stack(members), np.asarray(y), task)


def shrink(weights: np.ndarray, mean_share: float) -> np.ndarray:
    """mean_share of equal weights plus the rest of `weights`: still on the simplex."""
    w = np.asarray(weights, dtype=np.float64)
    return mean_share / len(w) + (1 - mean_share) * w


# ---------------------------------------------------------------------------------------------
# Honest scoring


def _row_losses(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    """Each row's proper score (n,): its log loss after a temperature fitted on these rows (classification:
    calibration aside, as the weights were fitted), or its squared error (regression)."""
    if task == "regression":
        return (p.reshape(len(p)) - y.astype(np.float64)) ** 2
    q = fit_post("temperature", y, p, "log_loss", task).apply(p)
    q = np.clip(q, EPS, 1 - EPS)
    if task == "multiclass":
        return -np.log(q[np.arange(len(q)), y.astype(np.int64)])
    t = y.reshape(len(y), -1).astype(np.float64)
    q = q.reshape(t.shape)
    return -np.mean(t * np.log(q) + (1 - t) * np.log1p(-q), axis=1)


def _gain_z(base: np.ndarray, other: np.ndarray) -> float:
    """How many standard errors `other`'s rows improve on `base`'s (paired: the mean of base - other over the
    standard error of that mean); 0 when the two do not differ."""
    d = base - other
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    return 0.0 if sd == 0 else float(np.mean(d) / (sd / np.sqrt(len(d))))


def _choose(stacked, y, fold, fits, metric, task) -> tuple[float, dict[str, dict[str, float]]]:
    """The share of the plain mean (one of MEAN_SHARES) for these rows, from blends nested over their folds
    (`fits`: the weights fitted without each fold). A share other than the mean's is eligible only where its
    nested blend's proper score (`_row_losses`) beats the mean's by more than GAIN_Z standard errors; the
    eligible share with the best mean proper score is chosen, ties to the larger share. The metric does not
    choose: between blends this close, a metric that counts images (accuracy, F1) moves by single rows.
    Also, per share: its nested blend's `metric`, mean proper score and gain over the mean in standard errors."""
    table, base = {}, None
    for share in MEAN_SHARES:
        out = np.empty(stacked.shape[1:], dtype=np.float64)
        for k, w in fits.items():
            held = fold == k
            out[held] = _weighted(shrink(w, share), stacked[:, held])
        losses = _row_losses(y, out, task)
        base = losses if base is None else base
        table[share] = {"metric": score(metric, y, out, task), "proper": round(float(np.mean(losses)), TIE_DIGITS),
                        "gain_z": _gain_z(base, losses)}
    eligible = [s for s in MEAN_SHARES if s == 1.0 or table[s]["gain_z"] > GAIN_Z]
    best = min(eligible, key=lambda s: table[s]["proper"])  # min keeps the first of equals: the larger share
    return best, {str(s): v for s, v in table.items()}


def _fits_without_each_fold(stacked, y, fold, task) -> dict:
    return {k.item(): _fit(stacked[:, fold != k], y[fold != k], task) for k in np.unique(fold)}


def _nested_weights(stacked, y, fold, fits, metric, task) -> tuple[np.ndarray, list, list]:
    """The blended OOF, each fold's rows blended with its weights in `fits` (fitted without that fold) shrunk by
    the share chosen without it (`_choose` over the other folds, nested among them); the weights and share of
    each fold."""
    out = np.empty(stacked.shape[1:], dtype=np.float64)
    fold_weights, fold_shares = [], []
    for k, w in fits.items():
        held, rest = fold == k, fold != k
        inner = _fits_without_each_fold(stacked[:, rest], y[rest], fold[rest], task)
        share, _ = _choose(stacked[:, rest], y[rest], fold[rest], inner, metric, task)
        applied = shrink(w, share)
        out[held] = _weighted(applied, stacked[:, held])
        fold_weights.append(applied)
        fold_shares.append(share)
    return out, fold_weights, fold_shares


def _inputs(members, y, fold, metric, task, method):
    check_method(method, metric, task)
    stacked = _stack(members)
    y, fold = np.asarray(y), np.asarray(fold)
    n = stacked.shape[1]
    if len(y) != n or len(fold) != n:
        raise ValueError(f"y, fold and the blend members need one row each: {len(y)}, {len(fold)}, {n}")
    if len(np.unique(fold)) < 2:
        raise ValueError("nested blend weights need at least two folds")
    return stacked, y, fold


def score_blend(members, y, fold, metric: str, task: str, method: str = "weights") -> tuple[dict, np.ndarray]:
    """(report, blended OOF). The report is JSON-ready:
    `weights`: what a submission applies with `blend` (mean/rank: equal weights; `weights`: fitted on all rows,
    shrunk by `mean_share`); `fitted_weights`: before the shrinkage; `mean_share`: the share of the plain mean,
    chosen on all rows (`_choose`); `shares`: for each candidate share, its blend nested over the folds on all
    rows: `metric`, `proper` (the mean proper score) and `gain_z` (over the mean, in standard errors). The
    choice was made on these rows, so the best of them is not an honest figure;
    `score`, `fold_scores`: nested (every row blended with weights fitted, and a share chosen, without its
    fold), the honest CV figure, fold scores in the order of `folds` (sorted); `fold_weights`,
    `fold_mean_shares`: what each fold was blended with; `score_in_sample`: `weights` scored on all rows,
    optimistic, for reference (mean/rank: = score); `member_scores`: each member alone on all rows;
    `fit`: the score the weights minimise (None for mean and rank).
    With fewer than MIN_FOLDS folds no share can be chosen without the rows it is scored on: `weights` then
    blends as the mean (`note` says so). Every reported score is of the blend itself, before any
    post-processing (the caller fits that nested on the returned OOF, as it does an experiment's)."""
    stacked, y, fold = _inputs(members, y, fold, metric, task, method)
    equal = np.full(len(stacked), 1 / len(stacked))
    folds = np.unique(fold)
    report = {"method": method, "metric": metric, "fit": None, "fitted_weights": None, "mean_share": 1.0,
              "shares": None, "fold_mean_shares": [1.0] * len(folds), "note": None}
    if method == "weights" and len(folds) < MIN_FOLDS:
        report["note"] = (f"{len(folds)} folds: too few to choose the weights' shrinkage without the rows it is "
                          f"scored on, so blended as the mean")
    if method == "weights" and len(folds) >= MIN_FOLDS:
        fitted = _fit(stacked, y, task)
        fits = _fits_without_each_fold(stacked, y, fold, task)
        share, shares = _choose(stacked, y, fold, fits, metric, task)
        weights = shrink(fitted, share)
        oof, fold_weights, fold_shares = _nested_weights(stacked, y, fold, fits, metric, task)
        report |= {"fit": "squared_error" if task == "regression" else "log_loss after a temperature",
                   "fitted_weights": [float(v) for v in fitted], "mean_share": share, "shares": shares,
                   "fold_mean_shares": fold_shares}
    else:  # nothing fitted: the nested blend is the in-sample one (rank: over all OOF rows)
        weights = equal
        oof = blend(list(stacked), equal, "rank" if method == "rank" else "mean")
        fold_weights = [equal] * len(folds)
    how = "rank" if method == "rank" else "weights"
    report |= {
        "weights": [float(v) for v in weights],
        "score": score(metric, y, oof, task),
        "fold_scores": [score(metric, y[fold == k], oof[fold == k], task) for k in folds],
        "folds": [k.item() for k in folds],
        "fold_weights": [[float(v) for v in w] for w in fold_weights],
        "score_in_sample": score(metric, y, blend(list(stacked), weights, how), task),
        "member_scores": [score(metric, y, p, task) for p in stacked],
    }
    return report, oof
