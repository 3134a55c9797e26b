"""Cross-validation folds: one fold number per train row, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from podium.config import Config
from podium.data.competition import split_tags
from podium.data.corrections import with_groups
from podium.errors import PodiumError


def stratify_on(train: pd.DataFrame, cfg: Config) -> np.ndarray:
    """What stratification balances across folds: the class (one-hot columns: the column that
    holds the 1), a 0/1 matrix of labels (multilabel; tags split on spaces), or for a regression
    target its quantile bin (up to 10 equally filled bins), so every fold sees the whole range."""
    data = cfg.data
    if data.tag_string:
        tags = split_tags(train[data.target])
        vocab = {t: j for j, t in enumerate(sorted({t for row in tags for t in row}))}
        y = np.zeros((len(train), len(vocab)), dtype=np.int64)
        for i, row in enumerate(tags):
            y[i, [vocab[t] for t in row]] = 1
        return y
    if data.task == "multilabel":
        return train[data.target_columns].to_numpy()
    if data.one_hot:
        return np.asarray(data.target_columns, dtype=object)[train[data.target_columns].to_numpy().argmax(axis=1)]
    if data.task == "regression":
        values = pd.to_numeric(train[data.target])
        bins = max(1, min(10, len(train) // (2 * cfg.folds.n_splits)))
        return pd.qcut(values.rank(method="first"), bins, labels=False).to_numpy()
    return train[data.target].to_numpy()


def split_folds(train: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """A frame of (id, fold) in train.csv's row order; each row in exactly one fold."""
    f, data = cfg.folds, cfg.data
    k, seed = f.n_splits, cfg.seed
    if f.groups_csv:
        train = with_groups(train, cfg)
    n = len(train)
    if k > n:
        raise PodiumError(f"folds.n_splits={k} is larger than the {n} rows of {data.train_csv}")
    x = np.zeros(n)
    y = stratify_on(train, cfg)
    groups = train[f.group_column].to_numpy() if f.group_column else None

    if f.strategy in ("stratified", "stratified_group"):
        counts = pd.Series(y).value_counts()
        if counts.min() < k:
            what = "target bin" if data.task == "regression" else "class"
            raise PodiumError(
                f"folds.n_splits={k} is larger than the smallest class allows for stratification: "
                f"{what} {counts.idxmin()!r} of column '{data.target}' has {counts.min()} row(s)"
            )
    if groups is not None:
        if pd.isna(groups).any():
            raise PodiumError(f"{data.train_csv}: group column '{f.group_column}' has empty values")
        if len(np.unique(groups)) < k:
            raise PodiumError(
                f"folds.n_splits={k} is larger than the {len(np.unique(groups))} groups in column '{f.group_column}'"
            )

    if f.strategy == "kfold":
        splitter = KFold(k, shuffle=True, random_state=seed)
    elif f.strategy == "stratified":
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    elif f.strategy == "group":
        splitter = GroupKFold(k, shuffle=True, random_state=seed)
    elif f.strategy == "stratified_group":
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    else:  # multilabel_stratified: iterative stratification (Sechidis et al. 2011)
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)

    fold = np.full(n, -1, dtype=np.int64)
    for i, (_, valid_idx) in enumerate(splitter.split(x, y, groups)):
        fold[valid_idx] = i
    assert (fold >= 0).all(), "a splitter left rows without a fold"
    return pd.DataFrame({data.id_column: train[data.id_column].to_numpy(), "fold": fold})
