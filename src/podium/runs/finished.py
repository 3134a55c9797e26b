"""Finished runs, read: an experiment's or a blend's out-of-fold and test predictions.

What a blend joins and what a student learns from (distillation, pseudo-labels). Reading only:
`stages.finished_run` checks first that the run is current; the training worker, which must not
write anywhere but its fold, reads what the launching process checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from podium import artifacts
from podium.config import Config, load_config
from podium.data.competition import Competition, load_competition
from podium.errors import PodiumError
from podium.runs import layout


@dataclass(frozen=True)
class Finished:
    """A finished run's predictions, in its competition's row orders."""

    name: str
    cfg: Config  # the experiment's resolved config (a blend: its first member's, under the blend's name)
    comp: Competition
    oof: np.ndarray  # (train rows, C) in train.csv's order: every row out of fold
    test: np.ndarray  # (test rows, C) in comp.test's order: the folds' mean (a blend: blended)
    digest: str  # a content hash of those predictions, for the records of what was made from them


def is_blend(runs_dir: str | Path, name: str) -> bool:
    return (Path(runs_dir) / name / layout.BLEND_JSON).is_file()


def saved_config(runs_dir: str | Path, name: str) -> Config:
    """The resolved config experiment `name` was trained with (its fold0/config.yaml), or the
    config a blend records."""
    run = Path(runs_dir) / name
    if is_blend(runs_dir, name):
        return load_config(run / layout.CONFIG_YAML)
    path = run / layout.fold_name(0) / layout.CONFIG_YAML
    if not path.is_file():
        raise PodiumError(f"{run} is neither a trained experiment (no {path}) nor a blend (no {layout.BLEND_JSON}): "
                          f"train it (make cv) or blend it (make blend) first")
    return load_config(path)


def _in_order(path: Path, ids: np.ndarray, cols: list[str], id_col: str) -> np.ndarray:
    return layout.read_predictions(path, cols, id_col, ids).in_order(ids)


def read_finished(runs_dir: str | Path, name: str) -> Finished:
    """The predictions of experiment or blend `name` (not checked: see stages.finished_run)."""
    cfg = saved_config(runs_dir, name)
    comp = load_competition(cfg)
    cols, id_col = comp.prob_columns, cfg.data.id_column
    train_ids, test_ids = comp.train[id_col].to_numpy(), comp.test[id_col].to_numpy()
    run = Path(runs_dir) / name
    oof = _in_order(run / layout.OOF_CSV, train_ids, cols, id_col)
    if is_blend(runs_dir, name):
        files = [run / layout.OOF_CSV, run / layout.TEST_CSV]
        test = _in_order(run / layout.TEST_CSV, test_ids, cols, id_col)
    else:
        n = cfg.folds.n_splits
        weight = layout.tta_weight(cfg)  # as make submit mixes the folds' test predictions
        files = [run / layout.OOF_CSV, *(layout.fold_dir(cfg, k) / layout.TEST_CSV for k in range(n))]
        if weight != 1.0:
            files += [layout.fold_dir(cfg, k) / layout.TEST_PLAIN_CSV for k in range(n)]
        test = layout.test_predictions(cfg, list(range(n)), cols, test_ids, weight)
    digest = artifacts.text_hash(*(artifacts.file_hash(f) for f in files))
    return Finished(name, cfg, comp, oof, test, digest)


def same_competition(a: Competition, b: Competition, what: str) -> None:
    """Refuse `what` (one line) unless the two are the same competition: task, prediction
    columns, training and test ids in the same order."""
    checks = [("task", a.task, b.task), ("prediction columns", a.prob_columns, b.prob_columns),
              ("training ids", list(a.train[a.id_column]), list(b.train[b.id_column])),
              ("test ids", list(a.test[a.id_column]), list(b.test[b.id_column]))]
    for name, x, y in checks:
        if x != y:
            shown = f" ({x} against {y})" if name in ("task", "prediction columns") else ""
            raise PodiumError(f"{what}: the {name} differ{shown}; they are not the same competition")
