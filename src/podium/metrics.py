"""Competition metrics, all computed by scikit-learn, with the direction that is better.

`probs` is (n, C) for multiclass (one column per class, in class order), (n,) for binary
(the probability of class 1) and (n, L) for multilabel. `y` is the class index (multiclass),
0/1 (binary) or an (n, L) 0/1 matrix (multilabel).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, log_loss, roc_auc_score

HIGHER_IS_BETTER = {"accuracy": True, "log_loss": False, "roc_auc": True, "f1_macro": True, "qwk": True}
METRICS = tuple(HIGHER_IS_BETTER)


def _hard(probs: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    if task == "multiclass":
        return probs.argmax(axis=1)
    return (probs >= threshold).astype(np.int64)


def score(name: str, y: np.ndarray, probs: np.ndarray, task: str) -> float:
    probs = np.asarray(probs, dtype=np.float64)
    if task == "multiclass":  # float32 softmax rows sum to 1 only within ~1e-7
        probs = probs / probs.sum(axis=1, keepdims=True)
    y = np.asarray(y)
    if name == "accuracy":  # multilabel: every label of a row right (subset accuracy)
        return float(accuracy_score(y, _hard(probs, task)))
    if name == "f1_macro":
        return float(f1_score(y, _hard(probs, task), average="macro", zero_division=0))
    if name == "qwk":
        return float(cohen_kappa_score(y, _hard(probs, task), weights="quadratic"))
    if name == "log_loss":
        if task == "multiclass":
            return float(log_loss(y, probs, labels=np.arange(probs.shape[1])))
        if task == "binary":
            return float(log_loss(y, probs, labels=[0, 1]))
        return float(np.mean([log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(y.shape[1])]))
    if name == "roc_auc":
        if task == "multiclass":
            return float(roc_auc_score(y, probs, multi_class="ovr", labels=np.arange(probs.shape[1])))
        return float(roc_auc_score(y, probs, average="macro"))
    raise ValueError(f"unknown metric {name!r}")


def score_all(y: np.ndarray, probs: np.ndarray, task: str) -> dict[str, float]:
    """Every metric that is defined for this task and these labels (NaN where undefined)."""
    out = {}
    for name in METRICS:
        if name == "qwk" and task == "multilabel":
            continue
        try:
            out[name] = score(name, y, probs, task)
        except ValueError:  # e.g. roc_auc with one class present in a tiny fold
            out[name] = float("nan")
    return out


def is_better(name: str, new: float, best: float | None) -> bool:
    if best is None or np.isnan(best):
        return not np.isnan(new)
    return new > best if HIGHER_IS_BETTER[name] else new < best
