"""The fold-ensembled submission, in sample_submission.csv's exact shape, checked before writing.

What goes in its columns follows the sample submission's columns, the task and the metric:

- probability: one column per class or label, or the single column of a binary task scored on
  probabilities (log_loss, roc_auc); temperature-scaled when one was fitted on the OOF.
- label: the single column of a multiclass or binary task, or 0/1 label columns scored on hard
  labels; the class value, or 0/1 by the thresholds fitted on the OOF (else submission.threshold).
- tags: a multilabel task's single column; the labels that pass their thresholds, space-separated.
- value: a regression task's single column; the predicted number, under qwk the class its
  cut-points give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podium.config import Config
from podium.data.competition import Competition
from podium.errors import PodiumError
from podium.evaluate.metrics import METRICS


def submission_kind(comp: Competition, cfg: Config) -> str:
    """'probability', 'label', 'tags' or 'value', from the sample submission's columns, the task
    and the metric; a sample that fits none of them is refused here, before any training."""
    prob_cols = comp.prob_columns
    rest = [str(c) for c in comp.sample.columns[1:]]
    sample, task, kind = cfg.data.sample_submission, comp.task, cfg.submission.kind
    probabilistic = METRICS[cfg.metric].probabilistic
    if task == "regression":
        if len(rest) != 1:
            raise PodiumError(f"{sample}: a regression task submits one column of values, found {rest}")
        if kind == "probability":
            raise PodiumError(f"submission.kind=probability, but a regression task submits values to {sample}")
        return "value"
    per_class = len(prob_cols) > 1 and sorted(rest) == sorted(prob_cols)
    if task == "multiclass" or task == "multilabel" and not per_class:
        if per_class:
            if kind == "label":
                raise PodiumError(f"submission.kind=label, but {sample} has one column per class")
            return "probability"
        if len(rest) == 1:
            if kind == "probability":
                raise PodiumError(f"submission.kind=probability, but {sample} has a single column '{rest[0]}'")
            return "label" if task == "multiclass" else "tags"
        what = "class" if task == "multiclass" else "label"
        raise PodiumError(f"{sample}: columns {rest} are neither one target column nor one column per {what} "
                          f"{prob_cols}")
    if task == "binary" and len(rest) != 1:
        raise PodiumError(f"{sample}: expected one prediction column for a binary task, found {rest}")
    if kind != "auto":
        return kind
    return "probability" if probabilistic else "label"


def build_submission(comp: Competition, cfg: Config, test_probs: pd.DataFrame, post=None) -> pd.DataFrame:
    """`test_probs`: the test ids (index) by comp.prob_columns, averaged over folds. `post`: the
    post-processing fitted on the OOF (postprocess.Fitted), or None."""
    prob_cols, id_col, sample = comp.prob_columns, cfg.data.id_column, comp.sample
    out_cols = list(sample.columns[1:])
    probs = test_probs.loc[sample[id_col].to_numpy(), prob_cols].to_numpy(dtype=np.float64)  # sample's id order
    kind = submission_kind(comp, cfg)
    fitted = post is not None and post.kind != "none"
    sub = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    if kind == "probability":
        values = post.apply(probs) if fitted and post.kind == "temperature" else probs
        by_name = {str(c): c for c in out_cols}
        for j, col in enumerate(prob_cols):
            sub[by_name[col] if col in by_name else out_cols[0]] = values[:, j]
    elif kind == "value":
        if fitted and post.kind == "cutpoints":
            values = post.apply(probs)[:, 0].astype(np.int64)
        elif cfg.metric == "qwk" and comp.classes:  # integers, as qwk scores them
            values = np.clip(np.rint(probs[:, 0]), min(comp.classes), max(comp.classes)).astype(np.int64)
        else:
            values = probs[:, 0]
        sub[out_cols[0]] = values
    elif comp.task == "multiclass":
        labels = np.asarray(comp.classes, dtype=object)[probs.argmax(axis=1)]
        sub[out_cols[0]] = pd.Series(labels).astype(pd.Series(comp.classes).dtype).to_numpy()
    else:  # hard labels of a binary or multilabel task: 0/1 columns, or tag strings
        hard = post.apply(probs) if fitted and post.kind == "thresholds" else probs >= cfg.submission.threshold
        hard = np.asarray(hard).astype(bool)
        if kind == "tags":
            # A row whose labels all fall below their thresholds gets its most probable label: an
            # empty prediction scores 0 on a row that has labels, and Kaggle reads "" as missing.
            hard[np.arange(len(hard)), probs.argmax(axis=1)] |= ~hard.any(axis=1)
            names = np.asarray(comp.prob_columns, dtype=object)
            sub[out_cols[0]] = [" ".join(names[row]) for row in hard]
        else:
            by_name = {str(c): c for c in out_cols}
            for j, col in enumerate(prob_cols):
                sub[by_name[col] if col in by_name else out_cols[0]] = hard[:, j].astype(np.int64)
    sub = sub[[id_col, *out_cols]]
    check_submission(sub, comp, cfg, kind)
    return sub


def check_submission(sub: pd.DataFrame, comp: Competition, cfg: Config, kind: str) -> None:
    """The same columns, the same ids in the same order, no missing values, valid values."""
    sample, id_col, name = comp.sample, cfg.data.id_column, cfg.data.sample_submission
    if list(sub.columns) != list(sample.columns):
        raise PodiumError(f"submission columns {list(sub.columns)} differ from {name}'s {list(sample.columns)}")
    if len(sub) != len(sample) or not (sub[id_col].to_numpy() == sample[id_col].to_numpy()).all():
        raise PodiumError(f"submission ids differ from {name}'s ids or their order")
    values = sub.drop(columns=[id_col])
    if values.isna().any().any():
        raise PodiumError("submission has missing values")
    if kind == "probability":
        v = values.to_numpy(dtype=np.float64)
        if (v < 0).any() or (v > 1).any():
            raise PodiumError("submission probabilities outside [0, 1]")
        if comp.task == "multiclass" and not np.allclose(v.sum(axis=1), 1.0, atol=1e-4):
            raise PodiumError("submission class probabilities do not sum to 1")
    elif kind == "value":
        v = pd.to_numeric(values.iloc[:, 0], errors="coerce")
        if v.isna().any() or not np.isfinite(v.to_numpy(dtype=np.float64)).all():
            raise PodiumError("submission values are not all finite numbers")
    elif kind == "tags":
        known = set(comp.prob_columns)
        unknown = {t for row in values.iloc[:, 0] for t in str(row).split()} - known
        if unknown or (values.iloc[:, 0].astype(str).str.strip() == "").any():
            raise PodiumError(f"submission tags {sorted(unknown)[:5]} are not labels of the training data"
                              if unknown else "submission has a row with no labels")
    elif comp.task == "multiclass":
        unknown = set(values.iloc[:, 0]) - set(comp.classes)
        if unknown:
            raise PodiumError(f"submission labels {sorted(map(str, unknown))} are not classes of the training data")
    elif not values.isin([0, 1]).all().all():
        raise PodiumError("submission labels are not all 0 or 1")
