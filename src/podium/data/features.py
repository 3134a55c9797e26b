"""Tabular metadata beside the image (`data.features`): columns of train_csv and test_csv
(a patient's age, the body site, Pawpularity's 0/1 flags) turned into one float vector per row.

The layout of that vector is the competition's (which columns, which categories): it is decided from
the column names and train_csv's values, never from a label, so every fold's model has the same
input. What is *fitted* (each numeric column's mean and standard deviation, which categories count
as known) is fitted per fold on that fold's training rows only, as a fold's model is: a validation
row's value never shapes the scaling its prediction is made with.

- numeric column: (value - mean) / std, and a 0/1 flag column that says the value is missing (the
  standardized value is then 0, the training mean). Missing is information (an unrecorded age is
  not the average age), and the flag lets the model learn what it means.
- categorical column (text, or listed in `data.categorical`): one 0/1 column per category of
  train_csv (a missing value is a category of its own, `<missing>`), and one `<other>` column for a
  value the fold's training rows never showed (a validation- or test-only category): a category the
  model never trained on gets no column of its own to read noise from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError

MISSING, OTHER = "<missing>", "<other>"
# A text column with more categories than this is an identifier or free text, not a category.
MAX_LEVELS = 256


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "numeric" | "categorical"
    levels: tuple[str, ...] = ()  # categorical: train_csv's categories, sorted

    @property
    def width(self) -> int:
        return 2 if self.kind == "numeric" else len(self.levels) + 1


def _as_levels(values: pd.Series) -> pd.Series:
    """A categorical column as text, a missing value as the category MISSING."""
    return values.astype("string").fillna(MISSING).astype(str)


def feature_layout(train: pd.DataFrame, columns: list[str], categorical: list[str], train_csv: Path,
                   reserved: list[str]) -> tuple[Column, ...]:
    """The columns' layout, checked: each must be in train_csv, be neither the id nor a target (a
    target as a feature is the label itself), and a numeric one must hold finite numbers."""
    out = []
    for name in columns:
        if name in reserved:
            raise PodiumError(f"config key 'data.features': {name!r} is {train_csv.name}'s id or target column; "
                              "a feature must be known for a test row")
        if name not in train.columns:
            raise PodiumError(f"{train_csv}: no column {name!r} (named in data.features)")
        values = train[name]
        if name in categorical or not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            levels = tuple(sorted(_as_levels(values).unique()))
            if len(levels) > MAX_LEVELS:
                raise PodiumError(f"{train_csv}: column {name!r} (data.features) has {len(levels)} distinct values, "
                                  f"more than {MAX_LEVELS}: an identifier or free text, not a category")
            out.append(Column(name, "categorical", levels))
            continue
        numbers = values.to_numpy(dtype=np.float64)
        if np.isinf(numbers).any():
            raise PodiumError(f"{train_csv}: column {name!r} (data.features) holds an infinite value")
        if np.isnan(numbers).all():
            raise PodiumError(f"{train_csv}: column {name!r} (data.features) is empty on every row")
        out.append(Column(name, "numeric"))
    unknown = sorted(set(categorical) - set(columns))
    if unknown:
        raise PodiumError(f"config key 'data.categorical': {unknown[0]!r} is not in data.features")
    return tuple(out)


def check_table(df: pd.DataFrame, layout: tuple[Column, ...], csv: Path) -> None:
    """Another table (test_csv, an extra CSV) holds every feature column; numeric ones as numbers."""
    for col in layout:
        if col.name not in df.columns:
            raise PodiumError(f"{csv}: no column {col.name!r} (named in data.features)")
        if col.kind == "numeric":
            values = pd.to_numeric(df[col.name], errors="coerce")
            bad = values.isna() & df[col.name].notna()
            if bad.any():
                first = df.index[bad.to_numpy()][0]
                raise PodiumError(f"{csv}: column {col.name!r} (data.features) holds {df[col.name][first]!r}, "
                                  "not a number")
            if np.isinf(values.to_numpy(dtype=np.float64)).any():
                raise PodiumError(f"{csv}: column {col.name!r} (data.features) holds an infinite value")


@dataclass
class FeatureEncoder:
    """One fold's encoding: the layout, each numeric column's (mean, std) and each categorical
    column's categories seen in the fold's training rows."""

    columns: tuple[Column, ...]
    scale: dict[str, tuple[float, float]] = field(default_factory=dict)
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(cls, columns: tuple[Column, ...], rows: pd.DataFrame) -> FeatureEncoder:
        """Fitted on `rows`: the fold's training rows (train_csv's, and data.extra's)."""
        scale, seen = {}, {}
        for col in columns:
            if col.kind == "numeric":
                values = pd.to_numeric(rows[col.name]).to_numpy(dtype=np.float64)
                values = values[~np.isnan(values)]
                mean = float(values.mean()) if len(values) else 0.0
                std = float(values.std()) if len(values) > 1 else 0.0
                scale[col.name] = (mean, std if std > 0 else 1.0)  # a constant column: centred, not divided by 0
            else:
                seen[col.name] = tuple(sorted(set(_as_levels(rows[col.name])) & set(col.levels)))
        return cls(columns, scale, seen)

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def names(self) -> list[str]:
        """The vector's column names, in order."""
        out = []
        for col in self.columns:
            out += [col.name, f"{col.name}{MISSING}"] if col.kind == "numeric" else \
                [f"{col.name}={v}" for v in (*col.levels, OTHER)]
        return out

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, width) float32."""
        blocks = [np.zeros((len(df), 0))]
        for col in self.columns:
            if col.kind == "numeric":
                values = pd.to_numeric(df[col.name]).to_numpy(dtype=np.float64)
                mean, std = self.scale[col.name]
                missing = np.isnan(values)
                blocks.append(np.column_stack([np.where(missing, 0.0, (values - mean) / std), missing]))
            else:
                seen = set(self.seen[col.name])
                index = {v: i for i, v in enumerate(col.levels) if v in seen}
                at = _as_levels(df[col.name]).map(index).fillna(len(col.levels)).to_numpy(dtype=np.int64)
                blocks.append(np.eye(len(col.levels) + 1)[at])  # the last column: <other>
        return np.hstack(blocks).astype(np.float32)

    def to_json(self) -> dict:
        return {"columns": [asdict(c) for c in self.columns], "scale": self.scale, "seen": self.seen}

    @classmethod
    def from_json(cls, tree: dict) -> FeatureEncoder:
        columns = tuple(Column(c["name"], c["kind"], tuple(c["levels"])) for c in tree["columns"])
        return cls(columns, {k: tuple(v) for k, v in tree["scale"].items()},
                   {k: tuple(v) for k, v in tree["seen"].items()})
