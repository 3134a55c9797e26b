"""A fold's rows and data loaders: training (with a teacher's targets and pseudo-labels),
validation and test, each reading its image size from a shared LoaderState."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from podium.config import Config
from podium.data.cache import ImageCache, cache_key
from podium.data.competition import Competition
from podium.data.corrections import read_corrections
from podium.data.datasets import BalancedSampler, ImageDataset, LoaderState, PhasedShuffle, class_index
from podium.data.features import FeatureEncoder
from podium.runs import layout
from podium.runs.finished import read_finished
from podium.train.teachers import distilled, pseudo_labels, soft_truth


def open_cache(cfg: Config, data_hash: str):
    """The decoded-image cache that `podium train` built before launching."""

    found = ImageCache.open(layout.image_cache_dir(cfg), cache_key(data_hash, cfg.train.image_size))
    if found is None:
        raise RuntimeError(f"data.cache is on but {layout.image_cache_dir(cfg)} holds no cache for this data")
    return found


@dataclass
class FoldData:
    """The fold's rows and loaders. Training images take the epoch's size from `size_state`, the
    per-epoch validation from `valid_state` (the same size: a model trained small is judged at the
    size it learns, not at one whose BatchNorm statistics and object scales it has not seen, Touvron
    et al. 2019); the final OOF and test predictions are at the full size."""

    train_df: pd.DataFrame
    valid_df: pd.DataFrame
    valid_targets: np.ndarray
    size_state: LoaderState
    valid_state: LoaderState
    train_loader: DataLoader
    valid_loader: DataLoader
    test_loader: DataLoader
    target_scale: tuple[float, float] | None = None  # regression: (mean, std) the head learns in
    pseudo_rows: int = 0  # test images after the fold's rows in train_df, labelled by a teacher (pseudo.teacher)
    extra_rows: int = 0  # data.extra's rows at the end of train_df
    # Each training row's weight in the loss, by position in train_df; None: all 1 (no data.extra
    # weight other than 1), and the loss is the plain mean it always was.
    row_weights: np.ndarray | None = None
    # data.features' encoding fitted on this fold's training rows; None without metadata
    features: FeatureEncoder | None = None

    def unscale(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs in the target's units (regression); probabilities pass unchanged."""
        if self.target_scale is None:
            return outputs
        mean, std = self.target_scale
        return outputs.astype(np.float64) * std + mean  # in float64, as the offline bundle computes it


def build_loaders(cfg: Config, comp: Competition, fold: int, data_hash: str) -> FoldData:
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={cfg.data.id_column: str})
    fold_of = comp.train[cfg.data.id_column].map(dict(zip(folds[cfg.data.id_column], folds["fold"], strict=True)))
    in_train = (fold_of != fold).to_numpy()
    # data.drop_ids / data.relabel change the training rows only: validation keeps every row and
    # its original label, so the fold's score is on what the competition scores.
    corrections = read_corrections(cfg, comp.train, comp.classes)
    valid_df = comp.train[~in_train].reset_index(drop=True)
    in_train = in_train & ~comp.train[cfg.data.id_column].isin(corrections.drop).to_numpy()
    train_df = corrections.relabelled(comp.train[in_train], cfg.data.id_column, comp.target_columns)
    train_y, valid_y = comp.encode(train_df), comp.encode(valid_df)
    train_df, train_y, pseudo = taught(cfg, comp, in_train, train_df, train_y)
    train_df, train_y, extra = with_extra(comp, train_df, train_y)
    # A regression head learns the target standardized by the training rows' mean and std (a 1-100
    # score then starts where a fresh head's outputs are); predictions are mapped back (unscale).
    scale = (float(train_y.mean()), float(train_y.std()) or 1.0) if comp.task == "regression" else None

    def learned(y):
        return ((y - scale[0]) / scale[1]).astype(np.float32) if scale else y

    # Metadata is standardized by the fold's training rows (extra rows included, pseudo-labelled
    # test rows not: they are the rows being predicted), never by a validation row.
    # train_df holds the fold's own rows, then the pseudo-labelled ones, then the extra ones.
    own = len(train_df) - pseudo - extra
    encoder = FeatureEncoder.fit(comp.features, pd.concat([train_df[:own], train_df[own + pseudo:]])) \
        if comp.features else None

    def feats(df):
        return encoder.transform(df) if encoder is not None else None

    size, aug, seed = cfg.train.image_size, cfg.augment, cfg.seed
    state = LoaderState(size)
    cache = open_cache(cfg, data_hash) if cfg.data.cache else None
    train_ds = ImageDataset(train_df["path"], learned(train_y), aug.train, state, seed, "augment.train",
                            augment_seed=True, cache=cache, features=feats(train_df))
    valid_state = LoaderState(size)
    valid_ds = ImageDataset(valid_df["path"], learned(valid_y), aug.valid, valid_state, seed, "augment.valid",
                            augment_seed=False, cache=cache, features=feats(valid_df))
    test_ds = ImageDataset(comp.test["path"], None, aug.valid, size, seed, "augment.valid", augment_seed=False,
                           cache=cache, features=feats(comp.test))
    workers, pin = cfg.train.num_workers, torch.cuda.is_available()
    # Each loader draws its workers' base seed from a generator of its own, not from torch's
    # global one: with persistent workers that draw happens only in the first epoch run, which
    # would make a resumed run's dropout differ from an uninterrupted one.
    loader_kw = dict(num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)
    # drop_last: every training batch is full, so batch statistics and mixing never see a
    # batch of one, and every process does the same number of updates.
    # The balanced sampler's order is a function of (seed, epoch); every process draws the same and
    # Accelerate gives each its share of the batches, as it does with the shuffled order.
    until = np.full(len(train_df), np.inf)  # the first epoch a row no longer trains in (data.extra's `epochs`)
    if extra:
        until[len(train_df) - extra:] = comp.extra["until"].to_numpy()
    if cfg.train.sampler == "balanced":
        order = dict(sampler=BalancedSampler(class_index(train_y, comp.task), seed, until))
    else:  # torch's own shuffle, unless some rows train for the first epochs only
        order = dict(shuffle=True) if np.isinf(until).all() else dict(sampler=PhasedShuffle(until, seed))
    train_loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, drop_last=True,
                              generator=torch.Generator().manual_seed(seed), **order, **loader_kw)
    pred_bs = cfg.predict.batch_size or 2 * cfg.train.batch_size
    valid_loader = DataLoader(valid_ds, batch_size=pred_bs, shuffle=False,
                              generator=torch.Generator().manual_seed(seed), **loader_kw)
    test_loader = DataLoader(test_ds, batch_size=pred_bs, shuffle=False, num_workers=workers, pin_memory=pin,
                             generator=torch.Generator().manual_seed(seed))
    weights = None
    if extra and (comp.extra["weight"] != 1).any():
        weights = np.concatenate([np.ones(len(train_df) - extra), comp.extra["weight"].to_numpy()]).astype(np.float32)
    return FoldData(train_df, valid_df, valid_y, state, valid_state, train_loader, valid_loader, test_loader, scale,
                    pseudo, extra, weights, encoder)


def with_extra(comp: Competition, train_df: pd.DataFrame, train_y: np.ndarray
               ) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The training rows and targets with data.extra's rows appended (every fold gets all of them;
    validation never does). With a teacher the targets are rows of probabilities: the extra rows'
    truth in that form (a teacher has no out-of-fold prediction of a row it never saw)."""
    if comp.extra is None:
        return train_df, train_y, 0
    extra_y = comp.encode(comp.extra)
    if train_y.ndim == 2 and extra_y.ndim == 1 and comp.task != "regression":
        extra_y = soft_truth(extra_y, comp.task, comp.num_outputs)
    rows = comp.extra.drop(columns=[c for c in comp.extra.columns if c not in train_df.columns])
    return (pd.concat([train_df, rows], ignore_index=True),
            np.concatenate([train_y, extra_y.astype(train_y.dtype).reshape((len(extra_y), *train_y.shape[1:]))]),
            len(rows))


def taught(cfg: Config, comp: Competition, in_train: np.ndarray, train_df: pd.DataFrame,
           train_y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The training rows and targets with a teacher's part: distillation mixes each training row's
    truth with the teacher's out-of-fold prediction of that row; pseudo-labelling appends test
    images with the teacher's test predictions as targets. Validation rows are never touched."""
    if not (cfg.distill.teacher or cfg.pseudo.teacher):
        return train_df, train_y, 0
    train_y = soft_truth(train_y, comp.task, comp.num_outputs)
    if cfg.distill.teacher:
        teacher = read_finished(cfg.runs_dir, cfg.distill.teacher)
        train_y = distilled(train_y, teacher.oof[in_train], cfg.distill.weight)
    pseudo = 0
    if cfg.pseudo.teacher:
        teacher = read_finished(cfg.runs_dir, cfg.pseudo.teacher)
        keep, targets = pseudo_labels(teacher.test, comp.task, cfg.pseudo.threshold)
        extra = comp.test[keep].reset_index(drop=True)
        train_df = pd.concat([train_df, extra], ignore_index=True)
        train_y = np.concatenate([train_y, targets.reshape((len(targets), *train_y.shape[1:]))])
        pseudo = len(extra)
    return train_df, train_y, pseudo
