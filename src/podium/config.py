"""The one typed config object: loaded from YAML plus `key=value` overrides, validated once.

Every key is documented in README.md ("Config reference"). A config file's stem is the
experiment name; its outputs go to `<runs_dir>/<experiment>/`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PodiumError


class _Section(BaseModel):
    # frozen: the config is made once at the entry point and only read afterwards.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    dir: str = "data/demo"
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    sample_submission: str = "sample_submission.csv"
    id_column: str = "id"
    target: Union[str, list[str]] = "label"
    task: Literal["multiclass", "binary", "multilabel"] = "multiclass"
    train_images: str = "train/{id}.png"
    test_images: str = "test/{id}.png"
    # Decode every image once, shrunk to the largest training size, into a memory-mapped file
    # under <run>/cache/ shared by all folds, epochs and workers. Costs disk: about
    # images x size^2 x 3 bytes x aspect.
    cache: bool = False

    @model_validator(mode="after")
    def _target_matches_task(self):
        if self.task == "multilabel" and not isinstance(self.target, list):
            raise ValueError("data.target: a multilabel task needs a list of 0/1 columns")
        if self.task != "multilabel" and isinstance(self.target, list):
            raise ValueError(f"data.target: a {self.task} task needs one column, not a list")
        return self

    @property
    def target_columns(self) -> list[str]:
        return list(self.target) if isinstance(self.target, list) else [self.target]


class FoldsConfig(_Section):
    strategy: Literal["kfold", "stratified", "group", "stratified_group", "multilabel_stratified"] = "stratified"
    n_splits: int = Field(5, ge=2)
    group_column: Optional[str] = None

    @model_validator(mode="after")
    def _group_needs_column(self):
        if self.strategy in ("group", "stratified_group") and not self.group_column:
            raise ValueError(f"folds.group_column: strategy '{self.strategy}' needs a group column")
        return self


class ModelConfig(_Section):
    name: str = "resnet18"
    # A local weights file (safetensors or .pth/.bin) loaded through timm's
    # pretrained_cfg_overlay; null trains from scratch. Nothing is ever downloaded.
    pretrained_file: Optional[str] = None
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)


class TrainConfig(_Section):
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)  # per process
    lr: float = Field(2e-3, gt=0)  # peak learning rate
    image_size: int = Field(32, ge=8)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    grad_accum: int = Field(1, ge=1)  # batches per optimizer update
    clip_grad_norm: Optional[float] = Field(None, gt=0)
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on GPU, off on CPU
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on with a GPU
    compile: bool = False  # torch.compile the model
    # cuDNN times its convolution algorithms once per input shape and keeps the fastest: a few
    # fixed sizes (progressive resizing's) cost a few tunings. Off: the same kernels every run.
    cudnn_benchmark: bool = True
    ema: bool = False  # keep an exponential moving average of the weights, validate with it
    ema_decay: float = Field(0.998, gt=0, lt=1)
    ema_warmup: bool = True  # ramp the EMA decay up at the start so early averages don't lag
    num_workers: int = Field(2, ge=0)  # data-loading processes per training process


class SchedulerConfig(_Section):
    # cosine_restarts: SGDR (Loshchilov & Hutter 2017), cycles of t0, t0*t_mult, ... epochs.
    # cosine: one decay over the whole run. constant: train.lr throughout (after warmup).
    name: Literal["cosine_restarts", "cosine", "constant"] = "cosine_restarts"
    # First cycle length in epochs; null: epochs / (1 + t_mult), i.e. two cycles that end
    # exactly when training ends (a run should finish at the bottom of a cycle).
    t0_epochs: Optional[float] = Field(None, gt=0)
    t_mult: int = Field(2, ge=1)  # each cycle this many times longer than the last
    lr_min: float = Field(1e-5, ge=0)
    cycle_decay: float = Field(1.0, gt=0, le=1)  # peak lr multiplied by this at every restart
    warmup_epochs: float = Field(1.0, ge=0)  # linear warmup from lr_min at the very start


class MixConfig(_Section):
    # Mixup (Zhang et al. 2018, alpha 0.2 as in "Bag of Tricks", He et al. 2019) and CutMix
    # (Yun et al. 2019, alpha 1.0). An alpha of 0 turns that one off.
    mixup_alpha: float = Field(0.2, ge=0)
    cutmix_alpha: float = Field(1.0, ge=0)
    prob: float = Field(0.5, ge=0, le=1)  # chance that a batch (or sample, mode elem) is mixed
    switch_prob: float = Field(0.5, ge=0, le=1)  # CutMix rather than Mixup when both are on
    mode: Literal["batch", "elem"] = "batch"  # one lambda per batch, or one per sample
    off_epochs: int = Field(2, ge=0)  # no mixing in the last N epochs: end on clean images


class LossConfig(_Section):
    # Label smoothing (Szegedy et al. 2016, 0.1): q = (1-eps) y + eps/K for softmax,
    # (1-eps) y + eps/2 for sigmoid outputs. Applied once, after mixing.
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class ResizeConfig(_Section):
    enabled: bool = True
    # Explicit schedule: [[epoch, size], ...], each size in force from its epoch on. Overrides
    # the ramp below.
    sizes: Optional[list[tuple[int, int]]] = None
    start_scale: float = Field(0.5, gt=0, le=1)  # first size = start_scale * train.image_size
    # The first half at start_scale (as in fast.ai's DAWNBench runs: half the epochs at half the
    # resolution), then up to full size by end_fraction. At 0.5 / 0.8 the training pixels are
    # about 0.47 of a full-size run.
    start_fraction: float = Field(0.5, ge=0, lt=1)  # the ramp begins this far into training
    end_fraction: float = Field(0.8, gt=0, le=1)  # full size from here on (at least the last 20%)
    step: int = Field(32, ge=1)  # sizes are multiples of this

    @model_validator(mode="after")
    def _ordered(self):
        if self.end_fraction <= self.start_fraction:
            raise ValueError("resize.end_fraction must be larger than resize.start_fraction")
        if self.sizes is not None and (not self.sizes or self.sizes[0][0] != 0):
            raise ValueError("resize.sizes must start at epoch 0")
        return self


class CheckpointConfig(_Section):
    every_epochs: int = Field(1, ge=1)  # also always after the last epoch
    keep: bool = False  # keep the last checkpoint once the fold is done (it holds optimizer state)


class AugmentConfig(_Section):
    # albumentations transforms by class name with their keyword arguments. A transform that
    # takes `size` (or `height`/`width`) gets the current image size unless it sets one itself.
    # The conversion to a tensor is appended by podium; normalization (mean, std) happens on the device.
    train: list[dict[str, Any]] = [{"name": "Resize"}]
    valid: list[dict[str, Any]] = [{"name": "Resize"}]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @field_validator("train", "valid")
    @classmethod
    def _named(cls, steps):
        for i, step in enumerate(steps):
            if "name" not in step:
                raise ValueError(f"step {i} has no 'name' (an albumentations transform class)")
        return steps


class PredictConfig(_Section):
    tta_hflip: bool = False  # average with the horizontally flipped image
    batch_size: Optional[int] = Field(None, ge=1)  # default: 2 x train.batch_size


class SubmissionConfig(_Section):
    # auto: class-named columns get probabilities; a single target column gets labels, or a
    # probability for a binary task scored by roc_auc/log_loss.
    kind: Literal["auto", "label", "probability"] = "auto"
    threshold: float = Field(0.5, gt=0, lt=1)  # binary/multilabel labels


MetricName = Literal["accuracy", "log_loss", "roc_auc", "f1_macro", "qwk"]


class Config(_Section):
    experiment: str = "default"  # set from the config file's stem
    seed: int = 42
    runs_dir: str = "runs"  # outputs go to <runs_dir>/<experiment>/
    submissions_dir: str = "submissions"  # make submit writes <submissions_dir>/<experiment>.csv
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
    metric: MetricName = "accuracy"  # the competition metric; decides the best epoch
    log_with: Optional[Literal["tensorboard", "wandb"]] = None  # experiment tracking; needs that package

    @model_validator(mode="after")
    def _task_fits(self):
        if self.folds.strategy == "multilabel_stratified" and self.data.task != "multilabel":
            raise ValueError("folds.strategy: multilabel_stratified needs data.task: multilabel")
        if self.data.task == "multilabel" and self.folds.strategy in ("stratified", "stratified_group"):
            raise ValueError(
                "folds.strategy: use multilabel_stratified (or kfold/group) for a multilabel task"
            )
        if self.metric == "qwk" and self.data.task == "multilabel":
            raise ValueError("metric: qwk is not defined for a multilabel task")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.experiment

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir)


# ---------------------------------------------------------------------------------------------
# Loading


def _fields_at(loc: tuple) -> list[str]:
    """The valid key names of the section at `loc` (for did-you-mean)."""
    model: Any = Config
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _format_error(err: dict) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        name = str(loc[-1])
        close = difflib.get_close_matches(name, _fields_at(loc[:-1]), n=1)
        hint = f" (did you mean '{'.'.join(map(str, loc[:-1] + (close[0],)))}'?)" if close else ""
        return f"unknown config key '{key}'{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a whole-config check: its message names the key itself
        return f"config: {msg}"
    return f"config key '{key}': {msg} (got {err.get('input')!r})"


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=value` strings; values are YAML scalars or lists (`3`, `null`, `[a, b]`)."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PodiumError(f"override '{item}': expected key=value, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise PodiumError(f"override '{item}': value is not valid YAML ({exc.problem})") from None
        out.append((key.strip(), value))
    return out


def config_from_dict(tree: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        first = _format_error(exc.errors()[0])
        more = len(exc.errors()) - 1
        raise PodiumError(f"{source}: {first}" + (f" (and {more} more)" if more else "")) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (safe loader), apply overrides, validate. The stem names the experiment."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PodiumError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise PodiumError(f"{path}: expected a mapping of config keys at the top level")
    tree.pop("provenance", None)  # a run's saved config.yaml carries it; it is not a setting
    tree.setdefault("experiment", path.stem)
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value)
    return config_from_dict(tree, source=str(path))


def config_hash(cfg: Config, sections: tuple[str, ...] | None = None) -> str:
    """A content hash of the resolved config (or of some of its sections)."""
    dumped = cfg.model_dump(mode="json")
    if sections is not None:
        dumped = {k: dumped[k] for k in sections}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]
