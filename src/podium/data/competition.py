"""The competition folder: its CSV files and images, read and checked before any training.

Every problem is a PodiumError naming the file, column or id. Image problems are collected and
reported together, so a user fixes them all in one go.
"""

from __future__ import annotations

import os
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.artifacts import file_hash, read_json, text_hash
from podium.config import Config
from podium.data.features import check_table, feature_layout
from podium.data.images import is_decodable
from podium.errors import PodiumError

ID_SHOWN = 10  # how many offending ids an error message lists


@dataclass(frozen=True)
class Competition:
    """The checked tables. `train`/`test` carry a `path` column: each row's image file."""

    train: pd.DataFrame
    test: pd.DataFrame
    sample: pd.DataFrame
    # multiclass: the sorted class values (one-hot: the columns); binary: [0, 1]; multilabel: the
    # labels (the columns, or the sorted tags seen in train_csv); regression: the sorted distinct
    # target values when they are all integers (what cut-points cut into), else [].
    classes: list
    task: str
    data_dir: Path
    # The probability columns of every oof.csv / test.csv: one per class, named str(class);
    # binary: one, named after the target (P(class 1)); multilabel: one per label;
    # regression: one, named after the target (the predicted value).
    prob_columns: list[str]
    target_columns: list[str] = ()  # the target's column(s) in train_csv
    target_kind: str = "column"  # how the target is held: column | one_hot | indicators | tags
    id_column: str = "id"
    # data.extra's rows, all of them, with `path` and `weight` (in the training loss) columns:
    # training rows of every fold, never validated on or scored (None: the config names none).
    extra: pd.DataFrame | None = None
    # data.features' layout (data/features.py): which columns, numeric or which categories; () without any
    features: tuple = ()

    @property
    def feature_width(self) -> int:
        """The width of a row's encoded metadata (data.features); 0 without any."""
        return sum(c.width for c in self.features)

    @property
    def num_outputs(self) -> int:
        """Model outputs: one logit per class or label, a single output for binary and regression."""
        return len(self.prob_columns)

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Targets as the loss and the metrics want them: class index (multiclass), 0/1 float
        (binary), a 0/1 float matrix (multilabel), the float value (regression)."""
        cols = list(self.target_columns)
        if self.target_kind == "tags":
            index = {t: j for j, t in enumerate(self.classes)}
            out = np.zeros((len(df), len(self.classes)), dtype=np.float32)
            for i, tags in enumerate(split_tags(df[cols[0]])):
                out[i, [index[t] for t in tags if t in index]] = 1
            return out
        if self.task == "multilabel":
            return df[cols].to_numpy(dtype=np.float32)
        if self.target_kind == "one_hot":
            return df[cols].to_numpy().argmax(axis=1).astype(np.int64)
        if self.task == "multiclass":
            lookup = {c: i for i, c in enumerate(self.classes)}
            return df[cols[0]].map(lookup).to_numpy(dtype=np.int64)
        return df[cols[0]].to_numpy(dtype=np.float32)


def split_tags(values: pd.Series) -> list[list[str]]:
    """Space-separated labels ('clear primary water'), each row's list."""
    return [str(v).split() for v in values]


def _list(values) -> str:
    values = [str(v) for v in values]
    head = ", ".join(repr(v) for v in values[:ID_SHOWN])
    return head + (f" and {len(values) - ID_SHOWN} more" if len(values) > ID_SHOWN else "")


def read_csv(path: Path, id_column: str, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise PodiumError(f"{path}: file not found")
    try:
        # ids stay strings: '007' must not become 7, and they name image files.
        df = pd.read_csv(path, dtype={id_column: str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PodiumError(f"{path}: cannot parse as CSV ({exc})") from None
    missing = [c for c in [id_column, *required] if c not in df.columns]
    if missing:
        raise PodiumError(f"{path}: no column {_list(missing)} (columns: {', '.join(map(str, df.columns))})")
    ids = df[id_column]
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    if empty.any():
        rows = [i + 2 for i in np.flatnonzero(empty.to_numpy())]  # +2: header line, 1-based
        raise PodiumError(f"{path}: column '{id_column}' is empty on line(s) {_list(rows)}")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise PodiumError(f"{path}: duplicate id(s) in column '{id_column}': {_list(dup)}")
    return df


def _check_targets(df: pd.DataFrame, path: Path, cfg: Config, *, whole: bool = True) -> None:
    """One-line refusals of targets that cannot be learned; `whole`: the table is the training set
    (so it must hold two classes), not a part of it."""
    data = cfg.data
    ids = df[data.id_column]
    for col in data.target_columns:
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if empty.any():
            raise PodiumError(f"{path}: target column '{col}' is empty or NaN for id(s) {_list(ids[empty])}")
        if data.task == "binary" or isinstance(data.target, list):
            bad = ~df[col].isin([0, 1])
            if bad.any():
                raise PodiumError(f"{path}: target column '{col}' must hold 0 or 1 for a {data.task} task; "
                                  f"id(s) {_list(ids[bad])} do not")
    if data.one_hot:
        ones = df[data.target_columns].sum(axis=1)
        bad = ones != 1
        if bad.any():
            raise PodiumError(f"{path}: one-hot columns {data.target_columns} must hold exactly one 1 per row; "
                              f"id(s) {_list(ids[bad])} do not")
    if data.task == "regression":
        values = pd.to_numeric(df[data.target], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        if bad.any():
            raise PodiumError(f"{path}: target column '{data.target}' must be numeric for a regression task; "
                              f"id(s) {_list(ids[bad])} are not ({_list(df.loc[bad, data.target])})")
        if cfg.metric == "qwk" and (values % 1 != 0).any():
            raise PodiumError(f"{path}: metric qwk scores integer targets (cut into classes); id(s) "
                              f"{_list(ids[values % 1 != 0])} have non-integer values in '{data.target}'")
    if whole and data.task == "multiclass" and not data.one_hot and df[data.target].nunique() < 2:
        raise PodiumError(f"{path}: target column '{data.target}' has fewer than two classes")


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def image_paths(df: pd.DataFrame, template: str, key: str, csv: Path, data_dir: Path) -> list[Path]:
    """Each row's image file, from a template such as 'train/{id}.png'; never outside data_dir."""
    fields = _template_fields(template)
    unknown = [f for f in fields if f not in df.columns]
    if unknown:
        raise PodiumError(f"config key '{key}': {{{unknown[0]}}} is not a column of {csv}")
    root = data_dir.resolve()
    rows = df[fields].astype(str).to_dict("records") if fields else [{}] * len(df)
    paths, escaping = [], []
    for row in rows:
        rel = template.format(**row)
        full = Path(os.path.normpath(root / rel))
        if Path(rel).is_absolute() or not full.is_relative_to(root):
            escaping.append(rel)
        paths.append(full)
    if escaping:
        raise PodiumError(f"{csv}: image path(s) {_list(escaping)} leave the competition folder {data_dir}")
    return paths


def _classes(train: pd.DataFrame, cfg: Config) -> list:
    data = cfg.data
    if isinstance(data.target, list):  # one-hot classes or 0/1 label columns
        return list(data.target_columns)
    if data.tag_string:
        return sorted({t for tags in split_tags(train[data.target]) for t in tags})
    if data.task == "binary":
        return [0, 1]
    if data.task == "regression":
        values = np.unique(train[data.target].to_numpy(dtype=np.float64))
        return [int(v) for v in values] if (values % 1 == 0).all() else []
    return sorted(train[data.target].unique().tolist())


def _target_kind(cfg: Config) -> str:
    if cfg.data.tag_string:
        return "tags"
    if cfg.data.one_hot:
        return "one_hot"
    return "indicators" if cfg.data.task == "multilabel" else "column"


def load_competition(cfg: Config) -> Competition:
    """Read and check the CSV files (not the image contents: see check_images)."""
    data = cfg.data
    root = cfg.data_dir
    if not root.is_dir():
        raise PodiumError(f"competition folder not found: {root} (config key 'data.dir')")
    sample_csv = root / data.sample_submission
    train_csv = root / data.train_csv
    # No test.csv (Cassava, Dog Breed, Planet): the sample submission's ids are the test rows.
    test_csv = root / data.test_csv if data.test_csv else sample_csv
    # folds.groups_csv: the group column comes from that file (data/corrections.py), not train_csv
    extra = [cfg.folds.group_column] if cfg.folds.group_column and not cfg.folds.groups_csv else []
    train = read_csv(train_csv, data.id_column, data.target_columns + extra)
    _check_targets(train, train_csv, cfg)
    sample = read_csv(sample_csv, data.id_column, [])
    if len(sample.columns) < 2:
        raise PodiumError(f"{sample_csv}: expected the id column and at least one prediction column")
    test = read_csv(test_csv, data.id_column, []) if data.test_csv else sample[[data.id_column]].copy()
    test_ids, sample_ids = set(test[data.id_column]), set(sample[data.id_column])
    if test_ids != sample_ids:
        only_test, only_sample = sorted(test_ids - sample_ids), sorted(sample_ids - test_ids)
        raise PodiumError(
            f"{test_csv} and {sample_csv} have different ids: "
            f"{len(only_test)} only in {data.test_csv} ({_list(only_test)}), "
            f"{len(only_sample)} only in {data.sample_submission} ({_list(only_sample)})"
        )
    if data.task == "regression":
        train[data.target] = pd.to_numeric(train[data.target])
    if data.task == "multiclass" and not data.one_hot and train[data.target].dtype.kind == "f":
        # 3.0 and 3 are one class; keep integer labels integers in the submission.
        if (train[data.target] % 1 == 0).all():
            train[data.target] = train[data.target].astype(np.int64)
    train = train.assign(path=image_paths(train, data.train_images, "data.train_images", train_csv, root))
    test = test.assign(path=image_paths(test, data.test_images, "data.test_images", test_csv, root))
    classes = _classes(train, cfg)
    one_column = data.task in ("binary", "regression")
    prob_columns = [data.target_columns[0]] if one_column else [str(c) for c in classes]
    clash = {data.id_column, "fold"} & set(prob_columns)
    if clash:
        raise PodiumError(f"{train_csv}: a class or label is named {sorted(clash)[0]!r}, which oof.csv needs for "
                          "its own column; rename it")
    features = ()
    if data.features:
        if not data.test_csv:
            raise PodiumError("config key 'data.features': the test rows need the feature columns too, and "
                              "data.test_csv is null (the sample submission holds only ids and predictions)")
        features = feature_layout(train, data.features, data.categorical, train_csv,
                                  [data.id_column, *data.target_columns])
        check_table(test, features, test_csv)
    return Competition(train=train, test=test, sample=sample, classes=classes, task=data.task, data_dir=root,
                       prob_columns=prob_columns, target_columns=data.target_columns, target_kind=_target_kind(cfg),
                       id_column=data.id_column, extra=_extra_rows(cfg, train, test, classes, features),
                       features=features)


def conform_targets(df: pd.DataFrame, csv: Path, cfg: Config, classes: list) -> None:
    """Another table's targets (data.extra, data.relabel) checked and typed as train_csv's, in
    place: its classes or labels must be among train_csv's (the model's outputs are)."""
    data = cfg.data
    _check_targets(df, csv, cfg, whole=False)
    if data.task == "regression":
        df[data.target] = pd.to_numeric(df[data.target])
    elif data.tag_string:
        unknown = sorted({t for tags in split_tags(df[data.target]) for t in tags} - set(classes))
        if unknown:
            raise PodiumError(f"{csv}: label(s) {_list(unknown)} are not among {data.train_csv}'s labels")
    elif data.task == "multiclass" and not data.one_hot:
        if df[data.target].dtype.kind == "f" and (df[data.target] % 1 == 0).all():
            df[data.target] = df[data.target].astype(np.int64)
        bad = ~df[data.target].isin(classes)
        if bad.any():
            raise PodiumError(f"{csv}: id(s) {_list(df.loc[bad, data.id_column])} have class(es) "
                              f"{_list(df.loc[bad, data.target].unique())} that {data.train_csv} does not")


def _extra_rows(cfg: Config, train: pd.DataFrame, test: pd.DataFrame, classes: list,
                features: tuple) -> pd.DataFrame | None:
    """data.extra's tables, checked as train_csv is, joined (with their image paths); None without any.
    Their ids must be unique and none of train_csv's or the test set's (a row's id names its
    predictions, and an extra row is never predicted); their classes must be train_csv's (the model's
    outputs are)."""
    data, root = cfg.data, cfg.data_dir
    parts, seen = [], {}
    taken = {**dict.fromkeys(train[data.id_column], data.train_csv),
             **dict.fromkeys(test[data.id_column], "the test set")}
    for i, extra in enumerate(data.extra):
        folder = Path(extra.dir) if extra.dir is not None else root
        csv = folder / extra.csv
        df = read_csv(csv, data.id_column, data.target_columns)
        for ident in df[data.id_column]:
            where = taken.get(ident) or seen.get(ident)
            if where:
                raise PodiumError(f"{csv}: id {ident!r} is also in {where}: an extra row needs an id of its own")
            seen[ident] = csv.name
        conform_targets(df, csv, cfg, classes)
        check_table(df, features, csv)
        paths = image_paths(df, extra.images, f"data.extra[{i}].images", csv, folder)
        columns = [data.id_column, *data.target_columns, *[c.name for c in features]]
        until = extra.epochs if extra.epochs is not None else np.inf  # the first epoch it is no longer in
        parts.append(df[columns].assign(path=paths, weight=extra.weight, until=until))
    return pd.concat(parts, ignore_index=True) if parts else None


def image_files(comp: Competition) -> list[Path]:
    """Every image the competition uses: train, test and extra rows'."""
    extra = list(comp.extra["path"]) if comp.extra is not None else []
    return [*comp.train["path"], *comp.test["path"], *extra]


# ---------------------------------------------------------------------------------------------
# Image checks and the data hash.
#
# Every image is opened and decoded once; the result is remembered by (path, size, mtime) in a
# cache file, together with the file's content hash. A stage judges freshness by content hashes;
# the stat key only saves re-reading files that did not change.


def _check_one(path: Path) -> tuple[str, int, int, str | None, bool]:
    try:
        st = path.stat()
    except OSError:
        return str(path), -1, -1, None, False
    return str(path), st.st_size, st.st_mtime_ns, file_hash(path), is_decodable(path)


def check_images(comp: Competition, cache_file: Path | None = None, workers: int = 8) -> tuple[str, dict]:
    """Check that every image exists and decodes; return a hash of the images' content and the
    updated cache (for the caller to write once every other check has passed too).

    Raises one PodiumError listing every missing and every undecodable file (all of them).
    """
    cache: dict = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cache = read_json(cache_file)
        except (OSError, ValueError):
            cache = {}
    paths = image_files(comp)
    results: dict[str, tuple] = {}
    todo = []
    for p in paths:
        key = str(p)
        hit = cache.get(key)
        try:
            st = p.stat()
        except OSError:
            st = None
        if hit and st and hit[0] == st.st_size and hit[1] == st.st_mtime_ns and hit[3]:
            results[key] = tuple(hit)
        else:
            todo.append(p)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2 and hashing release the GIL
        for key, size, mtime, digest, ok in pool.map(_check_one, todo):
            results[key] = (size, mtime, digest, ok)
    root = comp.data_dir.resolve()
    missing = [os.path.relpath(k, root) for k in map(str, paths) if results[k][0] < 0]
    broken = [os.path.relpath(k, root) for k in map(str, paths) if results[k][0] >= 0 and not results[k][3]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} image file(s) missing in {comp.data_dir}: " + ", ".join(missing))
    if broken:
        problems.append(f"{len(broken)} image file(s) in {comp.data_dir} cannot be decoded: " + ", ".join(broken))
    if problems:
        raise PodiumError("; ".join(problems))
    digest = text_hash(*(f"{os.path.relpath(k, root)}={results[k][2]}" for k in sorted(map(str, paths))))
    return digest, {k: list(v) for k, v in results.items()}
