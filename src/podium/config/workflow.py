"""The sections about the work around training: the search (`make tune`) and the trip to Kaggle
(`make kaggle-dataset`, `make kaggle-submit`). Neither changes what a fold learns."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from podium.config.sections import Section


class TuneRange(Section):
    low: float | None = Field(None, description="the range's low end (with `high`)")
    high: float | None = Field(None, description="the range's high end")
    log: bool = Field(False, description="draw on a log scale (learning rates, weight decay)")
    step: float | None = Field(None, gt=0, description="a grid step within the range; null: continuous")
    choices: list[Any] | None = Field(None, min_length=1, description="a list of values instead of a range")

    @model_validator(mode="after")
    def _one_kind(self):
        ranged = self.low is not None and self.high is not None
        if ranged == (self.choices is not None):
            raise ValueError("give either low and high, or choices")
        if ranged and not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if ranged and self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


# A search space any config can start from: the optimizer's two numbers and the regularizers.
DEFAULT_SPACE = {
    "train.lr": TuneRange(low=3e-4, high=1e-2, log=True),
    "train.weight_decay": TuneRange(low=1e-4, high=0.2, log=True),
    "loss.label_smoothing": TuneRange(choices=[0.0, 0.1]),
    "mix.mixup_alpha": TuneRange(choices=[0.0, 0.2, 0.4]),
}


class TuneConfig(Section):
    space: dict[str, TuneRange] = Field(DEFAULT_SPACE, description=(
        "`make tune`: the search space, dotted config keys each with `{low, high}` (and `log: true`, "
        "`step`) or `{choices: [...]}`. Default: train.lr 3e-4..1e-2 (log), train.weight_decay 1e-4..0.2 "
        "(log), loss.label_smoothing 0 or 0.1, mix.mixup_alpha 0, 0.2 or 0.4"))
    folds: list[int] = Field([0], min_length=1, description=(
        "the folds each trial trains; its score is their mean (by the config's metric)"))
    epochs: int | None = Field(None, ge=1, description=(
        "epochs per trial (written into each trial's train.epochs and into best.yaml); null: train.epochs"))
    trials: int = Field(20, ge=1, description=(
        "finished (complete or pruned) trials the study runs to; `make tune TRIALS=n` sets it"))
    pruner: Literal["median", "halving", "none"] = Field("median", description=(
        "stop a trial whose epoch score is below (`median`) the median of earlier trials at that epoch, "
        "or (`halving`) outside the best of its rung (successive halving); `none`: every trial runs out"))
    prune_after: int | None = Field(None, ge=0, description=(
        "no trial is pruned in its first N epochs (warmup, the first restart and mixing make early scores "
        "a poor guide); null: half the trial's epochs"))
    startup_trials: int = Field(4, ge=0, description=(
        "trials drawn at random before the sampler (TPE) models the space, and run out before the median "
        "pruner prunes"))
    seed: int = Field(0, description=(
        "the sampler's seed, mixed with the worker's number and the trials the study holds (a resumed search or "
        "a second worker draws new values)"))
    heartbeat_seconds: int = Field(60, ge=1, description=(
        "a running trial writes a heartbeat this often; one silent for twice as long (a killed worker) is "
        "marked failed and its parameters are tried again, resuming its folds from their checkpoints"))


class KaggleConfig(Section):
    competition: str | None = Field(None, description=(
        "the competition's slug, as in kaggle.com/competitions/<slug>: `make kaggle-submit` submits to it and "
        "`make kaggle-dataset` names the dataset after it; null: those targets refuse"))
    dataset: str | None = Field(None, description=(
        "the private Kaggle dataset `make kaggle-dataset` uploads the bundle to, `<owner>/<slug>`; null: "
        "`<your user name>/<competition>-<experiment>`"))

    @field_validator("competition")
    @classmethod
    def _slug(cls, value):
        if value is not None and not value.replace("-", "").isalnum():
            raise ValueError(f"'{value}' is not a competition slug (letters, digits and hyphens)")
        return value
