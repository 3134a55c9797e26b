"""Competition metrics, all computed by scikit-learn, with the direction that is better.

`METRICS` is the one list of metric names: `config.metric` accepts exactly its keys, and the
config reference describes them from it. Adding a metric is an entry here and its branch in
`score`.

`probs` is (n, C) for multiclass (one column per class, in class order), (n, 1) or (n,) for
binary (the probability of class 1), (n, L) for multilabel (one sigmoid per label) and (n, 1) or (n,)
for regression (the predicted value in the target's units). `y` is the class index (multiclass),
0/1 (binary), an (n, L) 0/1 matrix (multilabel) or the float target (regression). Metrics scored on
labels take binary/multilabel labels as positive from a probability of 0.5 (`_hard`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# scikit-learn is imported inside `score`: the config imports this module, and every CLI call
# loads the config, so importing it here would cost every command almost a second.

CLASSIFICATION = ("multiclass", "binary", "multilabel")


@dataclass(frozen=True)
class Metric:
    higher_is_better: bool
    about: str  # one line for the config reference: which average, which tasks
    tasks: tuple[str, ...] = CLASSIFICATION
    probabilistic: bool = False  # scored on probabilities, so a submission for it carries probabilities


METRICS: dict[str, Metric] = {
    "accuracy": Metric(True, "classification; multilabel: every label of a row right"),
    "log_loss": Metric(False, "classification; lower is better; multilabel: the mean over the label columns",
                       probabilistic=True),
    "roc_auc": Metric(True, "classification; multiclass: one-vs-rest, macro average; multilabel: mean column-wise",
                      probabilistic=True),
    "f1_macro": Metric(True, "classification; mean F1 over the classes, both for binary, or over the label columns"),
    "f1_micro": Metric(True, "multilabel; F1 of every (row, label) decision pooled", tasks=("multilabel",)),
    "f1_samples": Metric(True, "multilabel; the mean over rows of each row's F1", tasks=("multilabel",)),
    "f2_samples": Metric(True, "multilabel; the mean over rows of each row's F2 (Planet's metric)",
                         tasks=("multilabel",)),
    "qwk": Metric(True, "quadratic weighted kappa of the class index; regression: of the prediction rounded to "
                  "the nearest integer and clipped to the targets' range (integer targets); not for multilabel",
                  tasks=("multiclass", "binary", "regression")),
    "rmse": Metric(False, "regression; root mean squared error, lower is better", tasks=("regression",)),
    "mae": Metric(False, "regression; mean absolute error, lower is better", tasks=("regression",)),
}


def higher_is_better(name: str) -> bool:
    return METRICS[name].higher_is_better


def _hard(probs: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    if task == "multiclass":
        return probs.argmax(axis=1)
    return (probs >= threshold).astype(np.int64)


def _qwk_regression(y: np.ndarray, pred: np.ndarray) -> float:
    """QWK of the prediction rounded and clipped to [y.min(), y.max()]; NaN unless y is integer-valued.
    The weights are over every integer of that range (as Kaggle's scorer), not only the values seen."""
    from sklearn.metrics import cohen_kappa_score

    y = y.astype(np.float64)
    if not np.all(np.isfinite(pred)):
        raise ValueError("qwk: the predictions contain NaN or infinity")
    if len(y) == 0 or not np.all(np.isfinite(y)) or np.any(y != np.rint(y)):
        return float("nan")
    lo, hi = int(y.min()), int(y.max())
    hard = np.clip(np.rint(pred), lo, hi).astype(np.int64)
    return float(cohen_kappa_score(y.astype(np.int64), hard, weights="quadratic", labels=np.arange(lo, hi + 1)))


def score(name: str, y: np.ndarray, probs: np.ndarray, task: str) -> float:
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        f1_score,
        fbeta_score,
        log_loss,
        mean_absolute_error,
        mean_squared_error,
        roc_auc_score,
    )

    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}")
    if task not in METRICS[name].tasks:
        raise ValueError(f"metric {name} is not defined for a {task} task")
    probs = np.asarray(probs, dtype=np.float64)
    if task == "multiclass":  # float32 softmax rows sum to 1 only within ~1e-7
        probs = probs / probs.sum(axis=1, keepdims=True)
    if task in ("binary", "regression"):  # the (n, 1) column of oof.csv and the loop, as the vector sklearn wants
        probs = probs.reshape(len(probs))
    y = np.asarray(y)
    if name == "accuracy":  # multilabel: every label of a row right (subset accuracy)
        return float(accuracy_score(y, _hard(probs, task)))
    if name == "f1_macro":
        return float(f1_score(y, _hard(probs, task), average="macro", zero_division=0))
    if name == "f1_micro":
        return float(f1_score(y, _hard(probs, task), average="micro", zero_division=0))
    if name == "f1_samples":
        return float(f1_score(y, _hard(probs, task), average="samples", zero_division=0))
    if name == "f2_samples":
        return float(fbeta_score(y, _hard(probs, task), beta=2, average="samples", zero_division=0))
    if name == "qwk":
        if task == "regression":
            return _qwk_regression(y, probs)
        return float(cohen_kappa_score(y, _hard(probs, task), weights="quadratic"))
    if name == "rmse":
        return float(np.sqrt(mean_squared_error(y, probs)))
    if name == "mae":
        return float(mean_absolute_error(y, probs))
    if name == "log_loss":
        if task == "multiclass":
            return float(log_loss(y, probs, labels=np.arange(probs.shape[1])))
        if task == "binary":
            return float(log_loss(y, probs, labels=[0, 1]))
        return float(np.mean([log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(y.shape[1])]))
    if name == "roc_auc":
        if task == "multiclass" and probs.shape[1] == 2:  # scikit-learn's one-vs-rest wants three or more
            return float(roc_auc_score(y, probs[:, 1]))
        if task == "multiclass":
            return float(roc_auc_score(y, probs, multi_class="ovr", labels=np.arange(probs.shape[1])))
        return float(roc_auc_score(y, probs, average="macro"))
    raise ValueError(f"metric {name!r} has no branch in score")


def score_all(y: np.ndarray, probs: np.ndarray, task: str) -> dict[str, float]:
    """Every metric that is defined for this task and these labels (NaN where undefined)."""
    out = {}
    for name, metric in METRICS.items():
        if task not in metric.tasks:
            continue
        try:
            out[name] = score(name, y, probs, task)
        except ValueError:  # e.g. roc_auc with one class present in a tiny fold
            out[name] = float("nan")
    return out


def is_better(name: str, new: float, best: float | None) -> bool:
    if best is None or np.isnan(best):
        return not np.isnan(new)
    return new > best if higher_is_better(name) else new < best
