"""Fold properties, counted directly: every row once, stratification, groups kept whole, determinism."""

import numpy as np
import pandas as pd
import pytest

from podium.config import config_from_dict
from podium.data.splits import split_folds
from podium.errors import PodiumError


def _cfg(strategy, k=5, seed=42, task="multiclass", target="label", group=None):
    return config_from_dict({"seed": seed, "data": {"task": task, "target": target},
                             "folds": {"strategy": strategy, "n_splits": k, "group_column": group}})


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    n = 600
    labels = rng.choice(["a", "b", "c", "d"], size=n, p=[0.5, 0.25, 0.15, 0.10])
    groups = rng.integers(0, 120, size=n)
    return pd.DataFrame({"id": [f"i{i}" for i in range(n)], "label": labels, "patient": groups,
                         "x": rng.integers(0, 2, n), "y": rng.integers(0, 2, n),
                         "z": (rng.random(n) < 0.1).astype(int)})


def _every_row_once(train, folds, k):
    assert list(folds["id"]) == list(train["id"])  # train.csv's order, one row each
    assert folds["id"].is_unique
    assert set(folds["fold"]) == set(range(k))


def _stratified(train, folds, k):
    """Each class's count in each fold is within one row of its share."""
    for cls in train["label"].unique():
        per_fold = folds[train["label"].to_numpy() == cls]["fold"].value_counts().reindex(range(k), fill_value=0)
        assert per_fold.max() - per_fold.min() <= 1, (cls, per_fold.tolist())


def _groups_whole(train, folds):
    assert (pd.DataFrame({"g": train["patient"], "f": folds["fold"]}).groupby("g")["f"].nunique() == 1).all()


@pytest.mark.parametrize("strategy", ["kfold", "stratified", "group", "stratified_group"])
def test_every_row_in_exactly_one_fold_and_deterministic(train, strategy):
    group = "patient" if "group" in strategy else None
    a = split_folds(train, _cfg(strategy, group=group))
    b = split_folds(train, _cfg(strategy, group=group))
    _every_row_once(train, a, 5)
    pd.testing.assert_frame_equal(a, b)
    if strategy != "group":  # GroupKFold's balancing can be seed-independent for a given set of groups
        c = split_folds(train, _cfg(strategy, seed=7, group=group))
        assert not a["fold"].equals(c["fold"])


def test_stratified_proportions(train):
    _stratified(train, split_folds(train, _cfg("stratified")), 5)


def test_groups_never_split(train):
    for strategy in ("group", "stratified_group"):
        _groups_whole(train, split_folds(train, _cfg(strategy, group="patient")))


def test_stratified_group_keeps_class_shares_close(train):
    """With groups, exact stratification is impossible; each class's share per fold stays near
    its overall share (scikit-learn #24656 broke this once with shuffle=True)."""
    folds = split_folds(train, _cfg("stratified_group", group="patient"))
    overall = train["label"].value_counts(normalize=True)
    for k in range(5):
        share = train["label"][folds["fold"].to_numpy() == k].value_counts(normalize=True)
        assert (share.reindex(overall.index, fill_value=0) - overall).abs().max() < 0.08


def test_multilabel_stratified_balances_each_label(train):
    cfg = _cfg("multilabel_stratified", task="multilabel", target=["x", "y", "z"])
    folds = split_folds(train, cfg)
    _every_row_once(train, folds, 5)
    for col in ("x", "y", "z"):
        per_fold = train[col].groupby(folds["fold"].to_numpy()).sum()
        assert per_fold.max() - per_fold.min() <= 2, (col, per_fold.tolist())


def test_too_many_folds_for_smallest_class(train):
    small = train.copy()
    small.loc[small.index[:596], "label"] = "a"
    small.loc[small.index[596:], "label"] = "rare"  # 4 rows
    with pytest.raises(PodiumError, match="smallest class.*'rare'.*4 row"):
        split_folds(small, _cfg("stratified"))
