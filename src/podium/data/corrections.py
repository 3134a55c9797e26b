"""What a user corrects after looking at the data (`make audit`): rows never trained on
(`data.drop_ids`), corrected labels (`data.relabel`) and fold groups from a file (`folds.groups_csv`).

Drops and relabels change training only. Every original row stays in folds.csv, is predicted out
of fold and scored with its original label: a CV that skipped the rows a user found hard, or
scored them by the labels the user chose, would rise without the model getting any better.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podium.config import Config
from podium.data.competition import _list, conform_targets, read_csv
from podium.errors import PodiumError


@dataclass(frozen=True)
class Corrections:
    drop: frozenset = frozenset()  # train ids never trained on
    relabel: pd.DataFrame | None = None  # id and target column(s): the labels training uses instead

    def files(self, cfg: Config) -> list[Path]:
        """The files they come from: part of the data a fold's freshness is judged by."""
        out = [Path(cfg.data.drop_ids)] if isinstance(cfg.data.drop_ids, str) else []
        return out + ([Path(cfg.data.relabel)] if cfg.data.relabel else [])

    def relabelled(self, rows: pd.DataFrame, id_column: str, target_columns: list[str]) -> pd.DataFrame:
        """Training rows (the dropped ones already left out) with the corrected labels, as a new frame."""
        rows = rows.reset_index(drop=True)
        if self.relabel is None:
            return rows
        fixed = self.relabel.set_index(id_column)
        at = rows[id_column].isin(fixed.index).to_numpy()
        corrected = fixed.reindex(rows[id_column].to_numpy())[target_columns].set_axis(rows.index)
        # (the rows not relabelled read NaN in `corrected`: the column's own type is restored after)
        return rows.assign(**{col: rows[col].where(~at, corrected[col]).astype(rows[col].dtype)
                              for col in target_columns})
        fixed = self.relabel.set_index(id_column)
        at = rows[id_column].isin(fixed.index).to_numpy()
        rows = rows.copy()
        for col in target_columns:
            if at.any():
                rows[col] = rows[col].astype(object)
                rows.loc[at, col] = fixed.loc[rows.loc[at, id_column], col].to_numpy()
            rows[col] = rows[col].infer_objects()
        return rows


def _unknown(ids, train_ids: set, where: str) -> None:
    unknown = [i for i in ids if i not in train_ids]
    if unknown:
        raise PodiumError(f"{where}: id(s) {_list(unknown)} are not in train_csv")


def read_corrections(cfg: Config, train: pd.DataFrame, classes: list) -> Corrections:
    """data.drop_ids and data.relabel, checked: every id one of train_csv's, relabelled targets
    valid as train_csv's are (its classes), no id both dropped and relabelled."""
    data, id_col = cfg.data, cfg.data.id_column
    train_ids = set(train[id_col])
    if isinstance(data.drop_ids, str):
        path = Path(data.drop_ids)
        drop = read_csv(path, id_col, [])[id_col].tolist()
        _unknown(drop, train_ids, str(path))
    else:
        drop = [str(i) for i in data.drop_ids]
        _unknown(drop, train_ids, "config key 'data.drop_ids'")
    relabel = None
    if data.relabel:
        path = Path(data.relabel)
        relabel = read_csv(path, id_col, data.target_columns)
        _unknown(relabel[id_col], train_ids, str(path))
        conform_targets(relabel, path, cfg, classes)
        both = sorted(set(relabel[id_col]) & set(drop))
        if both:
            raise PodiumError(f"{path}: id(s) {_list(both)} are also in data.drop_ids; drop or relabel a row, not both")
        relabel = relabel[[id_col, *data.target_columns]]
    if len(set(drop)) == len(train_ids):
        raise PodiumError("config key 'data.drop_ids': it drops every row of train_csv")
    return Corrections(frozenset(drop), relabel)


def with_groups(train: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """train_csv's rows with folds.group_column read from folds.groups_csv (every row's group)."""
    path, col, id_col = Path(cfg.folds.groups_csv), cfg.folds.group_column, cfg.data.id_column
    if not col:
        raise PodiumError("config key 'folds.groups_csv': name its group column in folds.group_column")
    if col in train.columns:
        raise PodiumError(f"{cfg.data.train_csv} already has column {col!r}; folds.groups_csv would replace it")
    groups = read_csv(path, id_col, [col]).set_index(id_col)[col]
    missing = [i for i in train[id_col] if i not in groups.index]
    if missing:
        raise PodiumError(f"{path}: no group for train id(s) {_list(missing)}")
    return train.assign(**{col: train[id_col].map(groups).to_numpy()})
