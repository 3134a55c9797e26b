"""The one typed config object: every section together, with the checks that span sections.

A config file's stem is the experiment name; its outputs go to `<runs_dir>/<experiment>/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from podium.config.data import DataConfig, FoldsConfig
from podium.config.sections import (
    AuditConfig,
    AugmentConfig,
    CheckpointConfig,
    DistillConfig,
    LossConfig,
    MixConfig,
    ModelConfig,
    PostprocessConfig,
    PredictConfig,
    PseudoConfig,
    ResizeConfig,
    SchedulerConfig,
    Section,
    SubmissionConfig,
    TrainConfig,
)
from podium.config.workflow import KaggleConfig, TuneConfig
from podium.evaluate.metrics import METRICS

# Keys added after runs were made, each with the value at which podium behaves as it did before
# the key existed. At that value a key is left out of the config hashes that decide whether a fold,
# an OOF or a submission is current, so adding a key does not make every earlier run stale; a value
# that changes what a fold learns is hashed as usual. A key whose default changes behaviour does
# not belong here.
ADDED_KEYS: dict[str, object] = {
    "model.pretrained_remap": False,
    "model.pretrained": False,
    "model.head_init": "timm",
    "predict.tta": [],
    "predict.tta_scales": [1.0],
    "train.average_top_k": 1,
    "data.extra": [],
    "data.features": [],
    "data.categorical": [],
    "model.features_hidden": 64,
    "data.drop_ids": [],
    "data.relabel": None,
    "folds.groups_csv": None,
}

# The recipe for fine-tuning pretrained weights: with `model.pretrained` or `model.pretrained_file`,
# each key the config leaves out takes this value instead of its from-scratch default (a key the
# config sets keeps the config's value). Measured on real photographs: docs/training.md,
# "Fine-tuning pretrained weights". The from-scratch defaults work against pretrained weights: a
# new head with timm's init sends large random gradients into the features in the first updates,
# a high lr for every layer overwrites what the early layers know, and warm restarts raise the lr
# again after the model has settled. (Progressive resizing keeps its defaults: with weights, its
# floor `resize.min_size: auto` is the size they were trained at.)
FINE_TUNING: dict[str, object] = {
    "model.head_init": "zero",
    "train.lr": 5e-4,
    "train.layer_decay": 0.7,
    "scheduler.name": "cosine",
}


def fine_tuning_values(cfg: Config) -> dict[str, tuple[object, bool]]:
    """With pretrained weights: each FINE_TUNING key's value in `cfg`, and whether it is the
    fine-tuning value (True) or one the config set otherwise; {} without weights."""
    if not cfg.model.loads_weights:
        return {}
    out = {}
    for dotted, tuned in FINE_TUNING.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        out[dotted] = (value, value == tuned)
    return out


def scratch_default(dotted: str) -> object:
    """A key's from-scratch default: its section's field default."""
    section, key = dotted.split(".")
    return Config.model_fields[section].annotation.model_fields[key].default


def fine_tuning_note(cfg: Config) -> str | None:
    """The fold's `recipe:` line with pretrained weights: which FINE_TUNING values are in force and
    which keys the config set otherwise (a copied from-scratch config keeps its own recipe)."""
    values = fine_tuning_values(cfg)
    if not values:
        return None
    shown = {k: f"{k} {'null' if v is None else v}" for k, (v, _) in values.items()}  # as a config file writes it
    used = [shown[k] for k, (_, tuned) in values.items() if tuned]
    kept = [shown[k] for k, (_, tuned) in values.items() if not tuned]
    line = f"recipe: fine-tuning defaults ({', '.join(used) or 'none'})"
    return line + (f"; set by the config instead: {', '.join(kept)}" if kept else "")


# The names come from metrics.METRICS alone: a metric added there is accepted here.
MetricName = Literal[tuple(METRICS)]


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def weights_normalization(model_name: str, pretrained: bool) -> tuple[tuple, tuple]:
    """(mean, std) the input is normalized with: the weights' own when pretrained weights are loaded
    (timm's pretrained_cfg for the model; ImageNet's when timm has none), ImageNet's from scratch."""
    if not pretrained:
        return IMAGENET_MEAN, IMAGENET_STD
    from timm.models import get_pretrained_cfg  # imported only for a config that loads weights

    found = get_pretrained_cfg(model_name)
    if found is None or not found.mean or not found.std:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(found.mean), tuple(found.std)


class Config(Section):
    experiment: str = Field("default", description=(
        "the run folder's name; the config file's stem unless the file sets it "
        "(`configs/x.yaml` runs in `runs/x/`)"))
    seed: int = Field(42, description="drives folds, model init, data order and augmentation")
    runs_dir: str = Field("runs", description="outputs go to `<runs_dir>/<experiment>/`")
    submissions_dir: str = Field("submissions", description=(
        "`make submit` writes `<submissions_dir>/<experiment>.csv`"))
    data: DataConfig = DataConfig()
    folds: FoldsConfig = FoldsConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    mix: MixConfig = MixConfig()
    loss: LossConfig = LossConfig()
    resize: ResizeConfig = ResizeConfig()
    augment: AugmentConfig = AugmentConfig()
    predict: PredictConfig = PredictConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    submission: SubmissionConfig = SubmissionConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    distill: DistillConfig = DistillConfig()
    pseudo: PseudoConfig = PseudoConfig()
    audit: AuditConfig = AuditConfig()
    tune: TuneConfig = TuneConfig()
    kaggle: KaggleConfig = KaggleConfig()
    metric: MetricName = Field("accuracy", description=(
        "the competition metric; decides the best epoch and the CV score: "
        + ", ".join(f"`{name}` ({m.about})" for name, m in METRICS.items())))
    log_with: Literal["tensorboard", "wandb"] | None = Field(None, description=(
        "`tensorboard` or `wandb`: log every epoch through accelerate's trackers (under "
        "`<run>/logs/`); needs that package installed"))

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_the_weights(cls, data):
        """With pretrained weights, the FINE_TUNING values for the keys the config leaves out; and
        augment.mean/std `auto` made concrete (the weights' own with model.pretrained or
        pretrained_file, else ImageNet's). Resolved here, so the config a fold saves (and its hash)
        holds the values it trained with."""
        if not isinstance(data, dict) or not all(isinstance(data.get(s) or {}, dict) for s in ("augment", "model")):
            return data
        model = data.get("model") or {}
        pretrained = bool(model.get("pretrained_file") or model.get("pretrained"))
        out = {**data}
        if pretrained:
            for dotted, value in FINE_TUNING.items():
                section, key = dotted.split(".")
                given = out.get(section) or {}
                if isinstance(given, dict) and key not in given:
                    out[section] = {**given, key: value}
        augment = out.get("augment") or {}
        wanted = [key for key in ("mean", "std") if augment.get(key, "auto") == "auto"]
        if wanted:
            name = model.get("name", ModelConfig.model_fields["name"].default)
            resolved = dict(zip(("mean", "std"), weights_normalization(str(name), pretrained), strict=True))
            out["augment"] = {**augment, **{key: resolved[key] for key in wanted}}
        return out

    @model_validator(mode="after")
    def _task_fits(self):
        # Every problem at once, so a user fixes them in one go.
        problems = []
        if self.folds.strategy == "multilabel_stratified" and self.data.task != "multilabel":
            problems.append("folds.strategy: multilabel_stratified needs data.task: multilabel")
        if self.data.task == "multilabel" and self.folds.strategy in ("stratified", "stratified_group"):
            problems.append("folds.strategy: use multilabel_stratified (or kfold/group) for a multilabel task")
        if self.data.task not in METRICS[self.metric].tasks:
            fits = [name for name, m in METRICS.items() if self.data.task in m.tasks]
            problems.append(f"metric: {self.metric} is not defined for a {self.data.task} task "
                            f"(one of: {', '.join(fits)})")
        if self.train.sampler == "balanced" and self.data.task not in ("multiclass", "binary"):
            problems.append(f"train.sampler: balanced needs a multiclass or binary task, not {self.data.task}")
        if self.loss.focal_gamma > 0 and self.data.task == "regression":
            problems.append("loss.focal_gamma: the focal loss is for classification, not a regression task")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.experiment

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir)
