"""Targets taught by another run: distillation from its out-of-fold predictions, pseudo-labels
from its test predictions. Pure functions on arrays; engine.build_loaders applies them.

With a teacher, every training target is a row of probabilities (one column per output), or a
value for a regression task, so the truth, the teacher's part and the pseudo-labelled rows share
one form; mixing and label smoothing then apply to them as to any target.
"""

from __future__ import annotations

import numpy as np


def soft_truth(y: np.ndarray, task: str, num_outputs: int) -> np.ndarray:
    """The true labels as the rows a teacher's predictions are: one-hot (multiclass), (n, 1)
    (binary), (n, L) (multilabel); a regression target stays (n,)."""
    if task == "multiclass":
        return np.eye(num_outputs, dtype=np.float32)[y]
    if task == "binary":
        return y.reshape(-1, 1).astype(np.float32)
    return y.astype(np.float32)


def distilled(truth: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x truth + weight x teacher, row by row (Hinton et al. 2015 with the soft
    targets at temperature 1). `teacher`: the teacher's out-of-fold predictions of these rows."""
    teacher = teacher.reshape(truth.shape).astype(np.float32)
    return ((1 - weight) * truth + weight * teacher).astype(np.float32)


def pseudo_labels(test: np.ndarray, task: str, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(which test rows to add, their targets) from a teacher's test predictions (n, C).

    threshold None: every row, the teacher's prediction as a soft target. Otherwise only the rows
    the teacher is sure of, as hard labels: multiclass, the top class at `threshold` or more;
    binary and multilabel, every output at `threshold` or more, or at 1 - `threshold` or less.
    A regression target is a value: every row, the teacher's prediction.
    """
    test = np.asarray(test, dtype=np.float32)
    if task == "regression":
        return np.ones(len(test), dtype=bool), test.reshape(len(test))
    if threshold is None:
        return np.ones(len(test), dtype=bool), test
    if task == "multiclass":
        keep = test.max(axis=1) >= threshold
        return keep, np.eye(test.shape[1], dtype=np.float32)[test.argmax(axis=1)][keep]
    sure = (test >= threshold) | (test <= 1 - threshold)
    keep = sure.all(axis=1)
    return keep, (test[keep] >= threshold).astype(np.float32)
