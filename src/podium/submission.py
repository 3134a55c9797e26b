"""The fold-ensembled submission, in sample_submission.csv's exact shape, checked before writing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .competition import Competition
from .config import Config
from .errors import PodiumError

PROBABILISTIC_METRICS = ("roc_auc", "log_loss")


def submission_kind(comp: Competition, cfg: Config) -> str:
    """'probability' or 'label', from the sample submission's columns (and the metric)."""
    prob_cols = comp.prob_columns
    rest = [str(c) for c in comp.sample.columns[1:]]
    sample = cfg.data.sample_submission
    kind = cfg.submission.kind
    if comp.task == "multiclass":
        if sorted(rest) == sorted(prob_cols):
            if kind == "label":
                raise PodiumError(f"submission.kind=label, but {sample} has one column per class")
            return "probability"
        if len(rest) == 1:
            if kind == "probability":
                raise PodiumError(f"submission.kind=probability, but {sample} has a single column '{rest[0]}'")
            return "label"
        raise PodiumError(
            f"{sample}: columns {rest} are neither one target column nor one column per class {prob_cols}"
        )
    expected = cfg.data.target_columns
    if comp.task == "binary" and len(rest) != 1 or comp.task == "multilabel" and sorted(rest) != sorted(expected):
        raise PodiumError(f"{sample}: expected prediction column(s) {expected}, found {rest}")
    if kind != "auto":
        return kind
    return "probability" if cfg.metric in PROBABILISTIC_METRICS else "label"


def build_submission(comp: Competition, cfg: Config, test_probs: pd.DataFrame) -> pd.DataFrame:
    """`test_probs`: the test ids (index) by comp.prob_columns, averaged over folds."""
    prob_cols = comp.prob_columns
    id_col = cfg.data.id_column
    sample = comp.sample
    out_cols = list(sample.columns[1:])
    probs = test_probs.loc[sample[id_col].to_numpy(), prob_cols]  # sample's id order
    kind = submission_kind(comp, cfg)
    sub = pd.DataFrame({id_col: sample[id_col].to_numpy()})
    if comp.task == "multiclass":
        if kind == "probability":
            by_name = {str(c): c for c in out_cols}
            for col in prob_cols:
                sub[by_name[col]] = probs[col].to_numpy()
            sub = sub[[id_col, *out_cols]]
        else:
            classes = np.asarray(comp.classes, dtype=object)
            labels = classes[probs.to_numpy().argmax(axis=1)]
            sub[out_cols[0]] = pd.Series(labels).astype(pd.Series(comp.classes).dtype).to_numpy()
    else:
        values = probs.to_numpy()
        if kind == "label":
            values = (values >= cfg.submission.threshold).astype(np.int64)
        cols = out_cols if comp.task == "binary" else [str(c) for c in prob_cols]
        names = {str(c): c for c in out_cols}
        for j, col in enumerate(cols):
            sub[names[col]] = values[:, j]
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
    elif comp.task == "multiclass":
        unknown = set(values.iloc[:, 0]) - set(comp.classes)
        if unknown:
            raise PodiumError(f"submission labels {sorted(unknown)} are not classes of the training data")
