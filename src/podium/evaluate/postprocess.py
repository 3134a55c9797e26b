"""Post-processing fitted on out-of-fold predictions, and its honest score.

One mechanism, three kinds, each for the metrics it can move (`kind_for`):

- `temperature` (log_loss, any classification task; Guo et al. 2017). Mixup and smoothing leave
  probabilities underconfident (a model trained on soft targets hedges); one T rescales the logits:
  multiclass p' = softmax(log(p) / T), binary/multilabel p' = sigmoid(logit(p) / T), one T for all labels.
- `thresholds` (binary/multilabel metrics scored on labels: accuracy, f1_*, binary qwk):
  p'_j = 1 if p_j >= t_j else 0, so `metrics.score`, which takes labels at 0.5, scores exactly these labels.
- `cutpoints` (qwk on a regression task): K class values c_0 < ... < c_{K-1} and K-1 ordered cut-points;
  p' = c_k for the interval [cut_{k-1}, cut_k) that p falls in.

Anything fitted on the OOF and scored on the same OOF is optimistic: it has seen the rows it is judged on.
`score_postprocess` scores it nested over the folds: every row is transformed by a post-processing fitted without
its fold. The in-sample figure (fit on all rows, scored on all rows) is reported too, labelled as such; the parameters
fitted on all rows are what a submission applies.

Pure numpy/scipy: no I/O, no torch. Every reported score is `metrics.score`; the threshold and cut-point
searches use vectorised equivalents of the same formulas (tests check they agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from podium.evaluate.metrics import METRICS, higher_is_better, score

KINDS = ("none", "temperature", "thresholds", "cutpoints")
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before logs
T_BOUNDS = (0.05, 20.0)
GRID = np.round(np.arange(1, 100) / 100, 2)  # default threshold candidates 0.01 .. 0.99
MAX_PASSES = 20  # coordinate ascent stops earlier as soon as a whole pass changes nothing
TIE = 1e-12  # scores this close count as equal (the vectorised and sklearn sums differ in the last bits)


def kind_for(task: str, metric: str) -> str:
    """The post-processing that can move `metric` on `task`: 'none', 'temperature', 'thresholds' or 'cutpoints'.
    roc_auc (rank-based), rmse/mae and multiclass label metrics (argmax) get 'none'."""
    if metric not in METRICS or task not in METRICS[metric].tasks:
        raise ValueError(f"metric {metric!r} is not defined for a {task} task")
    if metric == "log_loss":
        return "temperature"
    if task == "regression":
        return "cutpoints" if metric == "qwk" else "none"
    if task in ("binary", "multilabel") and not METRICS[metric].probabilistic:
        return "thresholds"
    return "none"


@dataclass(frozen=True)
class Fitted:
    """A fitted post-processing. `params`: (T,) for temperature, one threshold per column for thresholds,
    the K-1 cut-points for cutpoints, () for none; `classes`: the K class values of cutpoints."""

    kind: str = "none"
    task: str = "multiclass"
    params: tuple[float, ...] = ()
    classes: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"post-processing kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "temperature" and (len(self.params) != 1 or not self.params[0] > 0):
            raise ValueError(f"temperature: one positive T, not {self.params}")
        if self.kind == "cutpoints" and (len(self.classes) != len(self.params) + 1
                                         or np.any(np.diff(self.params) < 0) or np.any(np.diff(self.classes) <= 0)):
            raise ValueError(f"cutpoints: K increasing classes and K-1 ordered cut-points, not "
                             f"{self.classes} and {self.params}")

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """The transformed predictions, in the shape they came in ((n, C), or (n,) for binary/regression)."""
        p = np.asarray(probs, dtype=np.float64)
        if self.kind == "none":
            return p.copy()
        if self.kind == "temperature":
            return _temper(p, self.params[0], self.task)
        if self.kind == "thresholds":
            cols = 1 if p.ndim == 1 else p.shape[1]
            if cols != len(self.params):
                raise ValueError(f"thresholds: {len(self.params)} fitted, the predictions have {cols} columns")
            return (p >= np.asarray(self.params)).astype(np.float64)
        return np.asarray(self.classes)[np.searchsorted(self.params, p, side="right")]

    def to_json(self) -> dict:
        return {"kind": self.kind, "task": self.task, "params": [float(v) for v in self.params],
                "classes": [float(v) for v in self.classes]}

    @classmethod
    def from_json(cls, d: dict) -> Fitted:
        """From `to_json`'s dict (`score_postprocess`'s `fitted`)."""
        return cls(d["kind"], d["task"], tuple(float(v) for v in d["params"]),
                   tuple(float(v) for v in d.get("classes", ())))


# ---------------------------------------------------------------------------------------------
# Fitting


def fit(kind: str, y: np.ndarray, probs: np.ndarray, metric: str, task: str, classes=None, *,
        candidates=None) -> Fitted:
    """The post-processing `kind` ('none', or `kind_for(task, metric)`) fitted to these rows.
    classes: the cut-points' class values (None or empty: the distinct targets of these rows; ignored by the
    other kinds); candidates: the thresholds' or cut-points' candidate values (defaults: 0.01..0.99, and the
    midpoints between consecutive distinct predictions)."""
    if kind != "none" and kind != kind_for(task, metric):
        raise ValueError(f"post-processing {kind!r} does not fit metric {metric} on a {task} task "
                         f"({kind_for(task, metric)!r} does)")
    y, p = np.asarray(y), np.asarray(probs, dtype=np.float64)
    if kind == "none":
        return Fitted("none", task)
    if kind == "temperature":
        return Fitted("temperature", task, (_fit_temperature(y, p, task),))
    if kind == "thresholds":
        return Fitted("thresholds", task, _fit_thresholds(y, p, metric, task, candidates))
    cuts, values = _fit_cutpoints(y, p.reshape(len(p)), classes, candidates)
    return Fitted("cutpoints", task, cuts, values)


def _temper(p: np.ndarray, t: float, task: str) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    if task == "multiclass":
        z = np.log(p) / t
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / t))


def _fit_temperature(y: np.ndarray, p: np.ndarray, task: str) -> float:
    """argmin over T in T_BOUNDS of the log loss. The loss is convex in 1/T (a negative log-likelihood of
    logits scaled by 1/T), so unimodal in log T: a bounded Brent search finds the global minimum."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda u: score("log_loss", y, _temper(p, float(np.exp(u)), task), task),
                          bounds=tuple(np.log(T_BOUNDS)), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def _pick(cands: np.ndarray, scores: np.ndarray, prefer: float) -> float:
    """The best-scoring candidate; among ties (within TIE) the one closest to `prefer`, then the lower."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    tied = np.flatnonzero(scores >= scores.max() - TIE)
    order = np.lexsort((cands[tied], np.abs(cands[tied] - prefer)))
    return float(cands[tied[order[0]]])


def _ascend(start: np.ndarray, candidates_at, scores_at, prefer: np.ndarray) -> np.ndarray:
    """Coordinate ascent: set each coordinate in turn to its best candidate given the others (`_pick`),
    pass after pass until a pass changes nothing. The current value is always a candidate, so a change
    means a better score or, at an equal score, a value closer to `prefer`: it ends."""
    x = start.astype(np.float64).copy()
    for _ in range(MAX_PASSES):
        changed = False
        for j in range(len(x)):
            cands = candidates_at(j, x)
            best = _pick(cands, scores_at(j, x, cands), prefer[j])
            if best != x[j]:
                x[j], changed = best, True
        if not changed:
            break
    return x


# --- thresholds ------------------------------------------------------------------------------


def _fbeta(tp, fp, fn, beta: float = 1.0):
    """F-beta from counts, 0 where there is nothing to count (sklearn's zero_division=0)."""
    b2 = beta * beta
    num = (1 + b2) * np.asarray(tp, dtype=np.float64)
    den = num + b2 * fn + fp
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _label_scores(metric: str, y: np.ndarray, hard: np.ndarray, j: int, cols: np.ndarray) -> np.ndarray | None:
    """The multilabel `metric` with label j's column replaced by each column of `cols` (n, m), all at once;
    None for a metric without a vectorised form. y, hard, cols are bool."""
    yj = y[:, j:j + 1]
    tp_c, fp_c, fn_c = cols & yj, cols & ~yj, ~cols & yj  # (n, m): label j's counts per candidate
    rest = np.ones(y.shape[1], dtype=bool)
    rest[j] = False
    yr, hr = y[:, rest], hard[:, rest]
    if metric == "accuracy":
        return (np.all(yr == hr, axis=1)[:, None] & (cols == yj)).mean(axis=0)
    if metric in ("f1_samples", "f2_samples"):
        beta = 2.0 if metric == "f2_samples" else 1.0
        tp, fp, fn = ((a & b).sum(axis=1)[:, None] for a, b in ((yr, hr), (~yr, hr), (yr, ~hr)))
        return _fbeta(tp + tp_c, fp + fp_c, fn + fn_c, beta).mean(axis=0)
    if metric == "f1_micro":
        tp, fp, fn = ((a & b).sum() for a, b in ((yr, hr), (~yr, hr), (yr, ~hr)))
        return _fbeta(tp + tp_c.sum(0), fp + fp_c.sum(0), fn + fn_c.sum(0))
    if metric == "f1_macro":  # the other labels' F1 is a constant: label j is searched on its own
        others = _fbeta((yr & hr).sum(0), (~yr & hr).sum(0), (yr & ~hr).sum(0)).sum()
        return (others + _fbeta(tp_c.sum(0), fp_c.sum(0), fn_c.sum(0))) / y.shape[1]
    return None


_OWN = ("accuracy", "f1_micro", "f1_samples", "f2_samples")  # the metrics `_own_optimum` knows


def _own_optimum(metric: str, y: np.ndarray, p: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Each label's best threshold on its own: its accuracy for accuracy, its F-beta for the F metrics."""
    out = []
    for j in range(y.shape[1]):
        cols, yj = p[:, j:j + 1] >= cands[None, :], y[:, j:j + 1]
        if metric == "accuracy":
            own = (cols == yj).mean(axis=0)
        else:
            own = _fbeta((cols & yj).sum(0), (cols & ~yj).sum(0), (~cols & yj).sum(0),
                         2.0 if metric == "f2_samples" else 1.0)
        out.append(_pick(cands, own, 0.5))
    return np.asarray(out)


def _fit_thresholds(y: np.ndarray, p: np.ndarray, metric: str, task: str, candidates) -> tuple[float, ...]:
    """One threshold per label, from the candidates, by coordinate ascent (`_ascend`). Where the metric
    decomposes over labels (f1_macro, or the single binary label) one pass finds each label's own optimum,
    which is the optimum over all combinations. Otherwise coordinate ascent is a local search: it runs from
    two starts (every label at the candidate closest to 0.5; each label at its own optimum) and keeps the
    better end (the first on a tie)."""
    cands = np.unique(np.asarray(GRID if candidates is None else candidates, dtype=np.float64))
    p2 = p.reshape(len(p), -1)
    n_labels = p2.shape[1]
    yb = np.asarray(y).reshape(len(p), -1).astype(bool)
    sign = 1.0 if higher_is_better(metric) else -1.0

    def full(t):
        hard = (p2 >= t).astype(np.float64)
        return sign * score(metric, y, hard if task == "multilabel" else hard[:, 0], task)

    def scores_at(j, t, cs):
        cols = p2[:, j:j + 1] >= cs[None, :]
        if task == "multilabel":
            fast = _label_scores(metric, yb, p2 >= t, j, cols)
            if fast is not None:
                return fast
        out, t = [], t.copy()
        for c in cs:  # any other metric, through metrics.score
            t[j] = c
            out.append(full(t))
        return np.asarray(out)

    prefer = np.full(n_labels, 0.5)
    starts = [np.full(n_labels, _pick(cands, np.zeros(len(cands)), 0.5))]
    if task == "multilabel" and n_labels > 1 and metric != "f1_macro" and metric in _OWN:
        starts.append(_own_optimum(metric, yb, p2, cands))
    ends = [_ascend(s, lambda j, t: cands, scores_at, prefer) for s in starts]
    values = np.nan_to_num([full(t) for t in ends], nan=-np.inf)
    best = ends[0] if values[0] >= values.max() - TIE else ends[int(np.argmax(values))]
    return tuple(best)


# --- cut-points ------------------------------------------------------------------------------


def _fit_cutpoints(y: np.ndarray, p: np.ndarray, classes, candidates) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """K-1 ordered cut-points maximising the regression qwk of `metrics.score`, by coordinate ascent from the
    candidates closest to the midpoints between the class values; ties go to the one closest to the midpoint.
    Cut k moves within [cut_{k-1}, cut_{k+1}] (equal cuts leave a class empty)."""
    yf = np.asarray(y, dtype=np.float64)
    if len(yf) == 0 or not np.all(np.isfinite(yf)) or np.any(yf != np.rint(yf)):
        raise ValueError("qwk cut-points need integer targets (qwk scores the class index)")
    values = np.unique(np.asarray(yf if classes is None or len(classes) == 0 else classes, dtype=np.float64))
    if len(values) < 2:
        return (), tuple(values)
    mids = (values[:-1] + values[1:]) / 2
    if candidates is None:
        u = np.unique(p)
        cands = (u[:-1] + u[1:]) / 2 if len(u) > 1 else mids
    else:
        cands = np.unique(np.asarray(candidates, dtype=np.float64))

    # The qwk of metrics.score (`_qwk_regression`) from counts: labels lo..hi, weights (a - b)^2, predicted
    # label of interval k = values[k] rounded and clipped to [lo, hi]. Moving cut k moves only the rows
    # between its neighbours, between labels A (below the cut) and B (from the cut on).
    lo, hi = int(yf.min()), int(yf.max())
    n_lab = hi - lo + 1
    lab = (np.clip(np.rint(values), lo, hi) - lo).astype(np.int64)
    order = np.argsort(p, kind="stable")
    ps, ts = p[order], (yf[order] - lo).astype(np.int64)
    w = (np.arange(n_lab)[:, None] - np.arange(n_lab)[None, :]) ** 2.0
    rw = np.bincount(ts, minlength=n_lab) @ w  # (true counts)^T w: the expected-weight term per predicted label
    n = len(ps)

    def bounds(k, cuts):
        return (cuts[k - 1] if k > 0 else -np.inf), (cuts[k + 1] if k + 1 < len(cuts) else np.inf)

    def candidates_at(k, cuts):
        a, b = bounds(k, cuts)
        inside = cands[(cands >= a) & (cands <= b)]
        return np.union1d(inside, cuts[k:k + 1])

    def scores_at(k, cuts, cs):
        a, b = bounds(k, cuts)
        i0, i1 = np.searchsorted(ps, a, side="left"), np.searchsorted(ps, b, side="left")
        pred = lab[np.searchsorted(cuts, ps, side="right")]
        outside = np.ones(n, dtype=bool)
        outside[i0:i1] = False
        num_out = w[ts[outside], pred[outside]].sum()
        col_out = np.bincount(pred[outside], minlength=n_lab)
        la, lb = lab[k], lab[k + 1]
        cum_a = np.concatenate([[0.0], np.cumsum(w[ts[i0:i1], la])])
        cum_b = np.concatenate([[0.0], np.cumsum(w[ts[i0:i1], lb])])
        s = np.searchsorted(ps[i0:i1], cs, side="left")  # rows of the window below each candidate: label A
        m = i1 - i0
        num = num_out + cum_a[s] + cum_b[m] - cum_b[s]
        den = (rw @ col_out + s * rw[la] + (m - s) * rw[lb]) / n
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, 1 - num / den, np.nan)

    start = np.array([cands[np.argmin(np.abs(cands - c))] for c in mids])
    start = np.maximum.accumulate(start)  # ordered
    return tuple(_ascend(start, candidates_at, scores_at, mids)), tuple(values)


# ---------------------------------------------------------------------------------------------
# Honest scoring


def nested_transform(y: np.ndarray, probs: np.ndarray, fold: np.ndarray, metric: str, task: str, classes=None, *,
                     candidates=None, per_fold: dict | None = None) -> np.ndarray:
    """The OOF predictions, each fold's rows transformed by the post-processing of `kind_for(task, metric)`
    fitted on the other folds' rows (never on its own). `per_fold`: fold k's predictions of every row
    (a TTA weight chosen without fold k: evaluate/tta_weight.py), fitted and applied for fold k in
    place of `probs`."""
    y, p, fold = np.asarray(y), np.asarray(probs, dtype=np.float64), np.asarray(fold)
    if len(fold) != len(p) or len(y) != len(p):
        raise ValueError(f"y, probs and fold need one row each: {len(y)}, {len(p)}, {len(fold)}")
    kind = kind_for(task, metric)
    out = np.empty_like(p)
    for k in np.unique(fold):
        held = fold == k
        if held.all():
            raise ValueError("nested post-processing needs at least two folds")
        pk = p if per_fold is None else np.asarray(per_fold[int(k)], dtype=np.float64)
        fitted = fit(kind, y[~held], pk[~held], metric, task, classes, candidates=candidates)
        out[held] = fitted.apply(pk[held])
    return out


def score_postprocess(y: np.ndarray, probs: np.ndarray, fold: np.ndarray, metric: str, task: str, classes=None, *,
                      candidates=None, per_fold: dict | None = None) -> dict:
    """JSON-ready. `fitted`: the post-processing fitted on all rows of `probs`, what a submission applies
    (`Fitted.to_json`; also its `kind` and `params` at the top); `score`/`fold_scores`: nested, the honest CV
    figure; `score_without`/`fold_scores_without`: the raw predictions; `score_in_sample`: fitted and scored
    on all rows (optimistic, for reference); `folds`: the fold ids, in the order of the fold scores.
    `per_fold`: as in nested_transform; the raw predictions are then each fold's rows of its own."""
    y, p, fold = np.asarray(y), np.asarray(probs, dtype=np.float64), np.asarray(fold)
    fitted = fit(kind_for(task, metric), y, p, metric, task, classes, candidates=candidates)
    nested = nested_transform(y, p, fold, metric, task, classes, candidates=candidates, per_fold=per_fold)
    folds = np.unique(fold)
    raw = p.copy()
    for k in folds if per_fold is not None else ():
        raw[fold == k] = np.asarray(per_fold[int(k)], dtype=np.float64)[fold == k]
    return {
        "kind": fitted.kind,
        "params": [float(v) for v in fitted.params],
        "fitted": fitted.to_json(),
        "metric": metric,
        "score": score(metric, y, nested, task),
        "fold_scores": [score(metric, y[fold == k], nested[fold == k], task) for k in folds],
        "score_without": score(metric, y, raw, task),
        "fold_scores_without": [score(metric, y[fold == k], raw[fold == k], task) for k in folds],
        "score_in_sample": score(metric, y, fitted.apply(p), task),
        "folds": [int(k) for k in folds],
    }
