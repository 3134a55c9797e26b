"""The weight between a run's plain-view predictions and its TTA mean, fitted on the OOF
(`postprocess.tta_weight`): prediction = w x TTA mean + (1 - w) x plain view.

TTA helps some models and hurts others (flipped photographs a model never saw flipped, crops that
cut the object out); the OOF of both, from one prediction pass, says which. The weight is chosen
from a short grid by the OOF's log loss (the squared error for a regression), a proper score
that every metric's ranking follows in the mean, and which does not jump at single rows the way
accuracy does; ties go to the larger weight (the TTA the config asked for).

Scored nested, like post-processing: each fold's rows are mixed with the weight chosen on the
other folds' rows; the weight chosen on every row is what the submission applies.
"""

from __future__ import annotations

import numpy as np

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
EPS = 1e-7


def mixed(tta, plain, weight: float):
    """The prediction of weight `weight`: arrays or tensors alike (the bundle mixes on the device)."""
    return weight * tta + (1 - weight) * plain


def mean_loss(y: np.ndarray, p: np.ndarray, task: str) -> float:
    """The mean log loss of probabilities (n, C) against the truth; a regression's squared error."""
    y = np.asarray(y)
    if task == "regression":
        return float(np.mean((p[:, 0] - y.astype(np.float64)) ** 2))
    p = np.clip(p, EPS, 1 - EPS)
    if task == "multiclass":
        return float(-np.mean(np.log(p[np.arange(len(y)), y.astype(np.int64)])))
    t = y.astype(np.float64).reshape(p.shape)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def choose(y: np.ndarray, tta: np.ndarray, plain: np.ndarray, task: str) -> tuple[float, dict[float, float]]:
    """(The weight of the grid with the lowest loss on these rows, ties to the larger; every weight's loss)."""
    losses = {w: mean_loss(y, mixed(tta, plain, w), task) for w in WEIGHTS}
    best = min(losses.values())
    return max(w for w, v in losses.items() if v <= best + 1e-12), losses


def fit_tta_weight(y: np.ndarray, tta: np.ndarray, plain: np.ndarray, fold: np.ndarray, task: str) -> dict:
    """`weight`: chosen on every row (what the submission applies); `fold_weights`: each fold's,
    chosen on the other folds' rows; `nested`: the OOF with each fold's rows mixed by its own
    weight (what is scored); `mixtures`: per fold, every row mixed by that fold's weight (what
    nested post-processing is fitted on, so that nothing fitted for a fold saw its rows);
    `mixture`: every row mixed by `weight` (what the submission's post-processing is fitted on);
    `losses`: each weight's loss on every row (in-sample, for the record)."""
    y, fold = np.asarray(y), np.asarray(fold)
    tta, plain = np.asarray(tta, dtype=np.float64), np.asarray(plain, dtype=np.float64)
    weight, losses = choose(y, tta, plain, task)
    fold_weights, mixtures = {}, {}
    nested = np.empty_like(tta)
    for k in np.unique(fold):
        held = fold == k
        w, _ = choose(y[~held], tta[~held], plain[~held], task)
        fold_weights[int(k)] = w
        mixtures[int(k)] = mixed(tta, plain, w)
        nested[held] = mixtures[int(k)][held]
    return {"weight": weight, "fold_weights": fold_weights, "nested": nested, "mixtures": mixtures,
            "mixture": mixed(tta, plain, weight),
            "losses": {str(w): v for w, v in losses.items()}}
