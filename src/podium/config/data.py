"""The competition's config sections: where its data is (`data`, with `data.extra`) and how its
rows are split into folds (`folds`). Keys, defaults and descriptions, as in sections.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from podium.config.sections import Section


class ExtraData(Section):
    dir: str | None = Field(None, description=(
        "the folder holding the extra data (e.g. another Kaggle dataset's input folder); null: `data.dir`"))
    csv: str = Field(description=(
        "a CSV of extra training rows (an earlier edition, a public set) with the id column and the target "
        "column(s) of train_csv; relative to `dir`"))
    images: str = Field(description="its image path template, as `data.train_images`; may not leave `dir`")
    weight: float = Field(1.0, gt=0, le=100, description=(
        "each of its rows' weight in the training loss, a train_csv row's being 1 (a batch's loss is the "
        "weighted mean over its rows; a mixed image's weight mixes as its target does)"))
    epochs: int | None = Field(None, ge=1, description=(
        "train on its rows in the first N epochs only (pretrain on the larger set, then fine-tune on the "
        "competition's rows); each later epoch keeps its number of updates, its extra rows' places taken by "
        "train_csv rows drawn again, so the lr schedule is unchanged; null: every epoch"))


class DataConfig(Section):
    dir: str = Field("data/demo", description=(
        "competition folder; the paths below are relative to it. `data/demo` is written on first use"))
    train_csv: str = Field("train.csv", description="the training rows: ids and targets")
    test_csv: str | None = Field("test.csv", description=(
        "the test rows' ids; null: the sample submission's ids are the test rows (Cassava, Dog Breed, "
        "Aerial Cactus and Planet ship no test.csv)"))
    sample_submission: str = Field("sample_submission.csv", description=(
        "the submission's shape: its columns and their order; its ids must be test_csv's"))
    id_column: str = Field("id", description="one unique id per row, read as text (`007` stays `007`)")
    target: str | list[str] = Field("label", description=(
        "the target column. multiclass: a column of class values, or a list of one-hot 0/1 columns "
        "(exactly one 1 per row; the classes are the columns); multilabel: a column of space-separated "
        "labels (the labels are those seen in train_csv), or a list of 0/1 columns"))
    task: Literal["multiclass", "binary", "multilabel", "regression"] = Field("multiclass", description=(
        "`multiclass` (softmax), `binary` (one sigmoid output, target 0/1), "
        "`multilabel` (one sigmoid per label), `regression` (one output, a numeric target)"))
    train_images: str = Field("train/{id}.png", description=(
        "training image path template, formatted with the row's columns; may not leave `data.dir`"))
    test_images: str = Field("test/{id}.png", description="test image path template, as `data.train_images`")
    extra: list[ExtraData] = Field(default_factory=list, description=(
        "extra training rows, each `{dir: folder (null: data.dir), csv: file in it, images: path template in "
        "it, weight: 1.0, epochs: null (or N: in the first N epochs only)}`, with train_csv's id and target "
        "columns: they join every fold's training rows and are never validated on, never in folds.csv, "
        "oof.csv or a score; checked as train_csv is (targets, images, ids unique and none of train's or "
        "test's, classes among train_csv's)"))
    features: list[str] = Field(default_factory=list, description=(
        "tabular metadata beside the image: columns of train_csv and test_csv (and every data.extra CSV); "
        "a numeric column is standardized by the fold's training rows' mean and std, with a 0/1 column "
        "flagging a missing value; a text column (or one in `data.categorical`) becomes one 0/1 column per "
        "category, with one for a category the fold's training rows never showed. A small MLP "
        "(`model.features_hidden`) reads them; its output joins the pooled image features before the head"))
    categorical: list[str] = Field(default_factory=list, description=(
        "columns of `data.features` to treat as categories though they hold numbers (a site code, a year)"))
    drop_ids: str | list[str | int] = Field(default_factory=list, description=(
        "train_csv rows never trained on (suspected wrong labels, broken images, e.g. from `make audit`): "
        "a list of ids or the path of a CSV file with the id column. They stay in folds.csv, "
        "are still predicted out of fold and scored: the CV is always on every row, so dropping rows cannot "
        "raise it by leaving the hard ones out"))
    relabel: str | None = Field(None, description=(
        "the path of a CSV file of train_csv ids with corrected target column(s): training uses "
        "the corrected labels, the CV scores the original ones (so a relabelling cannot flatter the CV)"))
    cache: bool = Field(False, description=(
        "decode every image once, its shorter side shrunk to `train.image_size`, into a memory-mapped "
        "cache under `<runs_dir>/.cache/images/` shared by all folds, epochs, workers and experiments on "
        "the same images (see Speed); costs about "
        "images x size² x 3 bytes of disk"))

    @model_validator(mode="after")
    def _target_matches_task(self):
        if self.task in ("binary", "regression") and isinstance(self.target, list):
            raise ValueError(f"data.target: a {self.task} task needs one column, not a list")
        if isinstance(self.target, list) and len(set(self.target)) != len(self.target):
            raise ValueError("data.target: a column is listed twice")
        if isinstance(self.target, list) and len(self.target) < 2:
            raise ValueError("data.target: a list of columns needs at least two; name the column alone")
        if len(set(self.features)) != len(self.features):
            raise ValueError("data.features: a column is listed twice")
        if set(self.categorical) - set(self.features):
            raise ValueError(f"data.categorical: {sorted(set(self.categorical) - set(self.features))[0]!r} "
                             "is not in data.features")
        return self

    @property
    def target_columns(self) -> list[str]:
        return list(self.target) if isinstance(self.target, list) else [self.target]

    @property
    def tag_string(self) -> bool:
        """A multilabel target held as one column of space-separated labels (Planet's tags)."""
        return self.task == "multilabel" and isinstance(self.target, str)

    @property
    def one_hot(self) -> bool:
        """A multiclass target held as one 0/1 column per class (Plant Pathology's)."""
        return self.task == "multiclass" and isinstance(self.target, list)


class FoldsConfig(Section):
    strategy: Literal["kfold", "stratified", "group", "stratified_group", "multilabel_stratified"] = Field(
        "stratified", description=(
            "`kfold` (shuffled), `stratified`, `group`, `stratified_group`, "
            "`multilabel_stratified` (iterative stratification)"))
    n_splits: int = Field(5, ge=2, description="number of folds")
    group_column: str | None = Field(None, description=(
        "column whose values never straddle two folds (`group`, `stratified_group`)"))
    groups_csv: str | None = Field(None, description=(
        "the path of a CSV file with the id column and `group_column` for every train_csv row, when train_csv "
        "lacks it: "
        "`make audit` writes runs/<experiment>/audit_groups.csv, whose `audit_group` keeps duplicate images "
        "in one fold"))

    @model_validator(mode="after")
    def _group_needs_column(self):
        if self.strategy in ("group", "stratified_group") and not self.group_column:
            raise ValueError(f"folds.group_column: strategy '{self.strategy}' needs a group column")
        return self
