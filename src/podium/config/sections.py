"""Each config section's keys, with their defaults and descriptions.

Each key's meaning is its Field description; docs/configuration.md's reference table is rendered
from them (`python -m podium.config.reference --write docs/configuration.md`).
"""

from __future__ import annotations

import functools
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The words YAML 1.1 reads as booleans: `train.channels_last=on` arrives as True.
_YAML_TRUE, _YAML_FALSE = ("on", "yes", "true"), ("off", "no", "false")


def _literal_words(annotation: Any) -> tuple:
    """The values of a Literal annotation, also inside Optional/Union; () for any other type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(word for arg in typing.get_args(annotation) for word in _literal_words(arg))


@functools.cache
def _bool_words(section: type[BaseModel]) -> dict[str, dict[bool, str]]:
    """{field: {True: 'on', False: 'off'}} for the fields whose Literal has such words."""
    out = {}
    for name, field in section.model_fields.items():
        words = _literal_words(field.annotation)
        meaning = {flag: next((w for w in spelled if w in words), None)
                   for flag, spelled in ((True, _YAML_TRUE), (False, _YAML_FALSE))}
        if any(meaning.values()):
            out[name] = {flag: word for flag, word in meaning.items() if word is not None}
    return out


class Section(BaseModel):
    # frozen: the config is made once at the entry point and only read afterwards.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans_as_words(cls, data: Any) -> Any:
        """`channels_last: on` loads as True: give a word field back the word the user wrote."""
        if not isinstance(data, dict):
            return data
        words = _bool_words(cls)
        return {key: words[key].get(value, value) if key in words and isinstance(value, bool) else value
                for key, value in data.items()}


class ModelConfig(Section):
    name: str = Field("resnet18", description="any timm model name")
    pretrained: bool = Field(False, description=(
        "timm's pretrained weights for `model.name` (`timm.create_model(..., pretrained=True)`), fetched once "
        "from the Hugging Face hub into huggingface_hub's cache (under HF_HOME) and read from there after, "
        "offline too (HF_HUB_OFFLINE=1); verified like `pretrained_file`, which it excludes"))
    pretrained_file: str | None = Field(None, description=(
        "local weights (safetensors, .pth, .bin; a `state_dict` or `model` wrapper and a `module.` prefix are "
        "taken off) for the model, a path or `package:<import name>/<path inside it>` for weights installed "
        "as a Python package; every tensor but a classifier of other classes must load from it, or "
        "training does not start; null trains from scratch"))
    pretrained_remap: bool = Field(False, description=(
        "map `pretrained_file`'s tensors onto the model by their order, not their names: for the same "
        "network saved by another implementation (a torch .pth/.bin file: a .safetensors file keeps no order); "
        "refused unless the shapes match one for one"))
    # Zero, as Big Transfer does (Kolesnikov et al. 2020): timm's own init of some heads (the
    # EfficientNets', uniform in ±1/sqrt(classes)) gives a 2-class head logits of ±10 on pretrained
    # features, and those first losses' gradients wreck the features the weights brought.
    head_init: Literal["timm", "zero"] = Field("timm", description=(
        "a classifier that does not come from the weights starts from timm's init (`timm`) or at zero "
        "(`zero`: every first prediction uniform, so the first updates train the head and send no random "
        "gradients into pretrained features); `zero` is the fine-tuning default"))
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    features_hidden: int = Field(64, ge=1, le=4096, description=(
        "with `data.features`: the width of the MLP (two layers) that reads them; its output is "
        "concatenated to the pooled image features before a new classifier"))
    # Stochastic depth (Huang et al. 2016); timm ramps the rate up block by block to this value.
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "stochastic depth: the chance that the last residual block is skipped in a training step, ramped up "
        "from 0 at the first block (timm's); 0.1-0.2 is common when fine-tuning, more for long runs and large "
        "models; 0 turns it off. Refused for a model without drop path"))

    @property
    def loads_weights(self) -> bool:
        """Pretrained weights are loaded: from the hub or a local file."""
        return bool(self.pretrained or self.pretrained_file)

    def without_weights(self) -> ModelConfig:
        """The same architecture built from scratch (what a bundle or a shape-only use builds before
        it loads weights of its own)."""
        return self.model_copy(update={"pretrained": False, "pretrained_file": None, "pretrained_remap": False})

    @model_validator(mode="after")
    def _one_source_of_weights(self):
        if self.pretrained and self.pretrained_file:
            raise ValueError("model.pretrained and model.pretrained_file both name weights; keep one "
                             "(pretrained: the hub's, pretrained_file: a local file)")
        if self.pretrained_remap and not self.pretrained_file:
            raise ValueError("model.pretrained_remap maps a local file's tensors; it needs model.pretrained_file")
        return self


class TrainConfig(Section):
    epochs: int = Field(15, ge=1, description="epochs per fold")
    batch_size: int = Field(64, ge=1, description=(
        "per process; the last incomplete batch of an epoch is dropped"))
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    image_size: int = Field(32, ge=8, description="training and inference size (square)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description=(
        "`adamw` (torch's fused kernel where the device has one) or `sgd` (Nesterov momentum)"))
    # Never on biases and normalization weights (He et al. 2019, "Bag of Tricks"): timm's factory.
    weight_decay: float = Field(0.05, ge=0, description=(
        "the optimizer's weight decay, on weights of 2 or more dimensions only (biases and normalization "
        "weights get none)"))
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    grad_accum: int = Field(1, ge=1, description="batches per optimizer update")
    clip_grad_norm: float | None = Field(None, gt=0, description=(
        "clip the gradient norm to this value; null: no clipping"))
    precision: Literal["auto", "no", "bf16", "fp16"] = Field("auto", description=(
        "training autocast: `auto` (on a GPU bf16, else fp16; on a CPU whichever of float32 and "
        "bf16 trains faster, timed once per machine, bf16 only where the CPU has it natively), `no` "
        "(float32), `bf16`, `fp16`. OOF and test predictions are always made in float32"))
    channels_last: Literal["auto", "on", "off"] = Field("auto", description=(
        "memory format: `auto` (on with a GPU; on a CPU timed with `precision`), `on`, `off`"))
    compile: bool = Field(False, description=(
        "`torch.compile` the model (once; at most one graph per image size and train/eval mode)"))
    # A few fixed sizes (progressive resizing's) cost a few tunings.
    cudnn_benchmark: bool = Field(True, description=(
        "GPU: let cuDNN time its algorithms once per image size and keep the fastest; "
        "`false` for the same kernels every run"))
    ema: bool = Field(False, description=(
        "validate and save an exponential moving average of the weights (BatchNorm buffers included)"))
    ema_decay: float = Field(0.998, gt=0, lt=1, description="the EMA's decay per optimizer update")
    ema_warmup: bool = Field(True, description="ramp the EMA decay up at the start so early averages don't lag")
    average_top_k: int = Field(1, ge=1, le=20, description=(
        "the fold's final weights: the mean of its k best epochs by the validation metric (at the full size), "
        "BatchNorm statistics recomputed on the training images; the OOF of the best epoch alone is kept "
        "beside (make oof scores both). 1: the best epoch's weights"))
    num_workers: int = Field(2, ge=0, description="data-loading processes per training process")
    # Fine-tuning a pretrained model. Off by default: a model trained from scratch gains nothing from them.
    layer_decay: float | None = Field(None, gt=0, le=1, description=(
        "layer-wise lr decay (BEiT; timm's): the top layer group and the classifier train at the scheduled lr, "
        "each group below at `layer_decay` times the one above; 0.65-0.85 when fine-tuning a pretrained "
        "transformer; null: one lr for all. Needs a model with timm's `group_matcher` (checked)"))
    grad_checkpointing: bool = Field(False, description=(
        "recompute activations in the backward pass instead of keeping them: far less memory (a larger "
        "batch or image on the same GPU) at the cost of a second forward pass; the model must support it (checked)"))
    freeze_epochs: int = Field(0, ge=0, description=(
        "train only the classifier (`model.get_classifier()`) for the first N epochs, the rest of the "
        "model frozen, then everything; lets a new random head settle before it sends gradients into "
        "pretrained features. 0: no freezing"))
    sampler: Literal["shuffle", "balanced"] = Field("shuffle", description=(
        "`shuffle` (every training row once per epoch) or `balanced` (as many rows per epoch, each drawn with "
        "replacement with probability ∝ 1 / its class's count, so every class comes equally often); "
        "multiclass and binary only"))


class SchedulerConfig(Section):
    # cosine_restarts is SGDR (Loshchilov & Hutter 2017): cycles of t0, t0*t_mult, ... epochs.
    name: Literal["cosine_restarts", "cosine", "constant"] = Field("cosine_restarts", description=(
        "`cosine_restarts` (cycles of `t0_epochs`, `t0_epochs x t_mult`, ...), "
        "`cosine` (one decay to `lr_min`) or `constant` (`train.lr` after the warmup)"))
    # The null default makes a run finish at the bottom of a cycle, where the weights are best.
    t0_epochs: float | None = Field(None, gt=0, description=(
        "first cycle's length in epochs; null: epochs / (1 + t_mult), two cycles ending with training"))
    t_mult: int = Field(2, ge=1, description="each cycle this many times longer than the one before")
    lr_min: float = Field(1e-5, ge=0, description="floor of the cosine")
    cycle_decay: float = Field(1.0, gt=0, le=1, description="the peak lr is multiplied by this at every restart")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warmup from `lr_min` to `train.lr`")


class MixConfig(Section):
    # Defaults: Mixup alpha 0.2 as in "Bag of Tricks" (He et al. 2019), CutMix alpha 1.0 as in
    # Yun et al. 2019; prob below 1 because strong mixing costs accuracy on short budgets.
    mixup_alpha: float = Field(0.2, ge=0, description="Beta(α, α) of Mixup (Zhang et al. 2018); 0 turns it off")
    cutmix_alpha: float = Field(1.0, ge=0, description="Beta(α, α) of CutMix (Yun et al. 2019); 0 turns it off")
    prob: float = Field(0.5, ge=0, le=1, description="chance that a batch (mode elem: a sample) is mixed")
    switch_prob: float = Field(0.5, ge=0, le=1, description="CutMix rather than Mixup when both are on")
    mode: Literal["batch", "elem"] = Field("batch", description=(
        "`batch` (one λ per batch) or `elem` (one per sample)"))
    off_epochs: int = Field(2, ge=0, description="no mixing in the last N epochs: training ends on clean images")


class LossConfig(Section):
    # Applied once, after mixing: a loss that smoothed again would smooth twice.
    label_smoothing: float = Field(0.1, ge=0, lt=1, description=(
        "ε (Szegedy et al. 2016): targets (1-ε) y + ε/K for softmax, (1-ε) y + ε/2 for sigmoid "
        "outputs; 0 turns it off"))
    focal_gamma: float = Field(0.0, ge=0, description=(
        "γ of the focal loss (Lin et al. 2017): each class's cross-entropy term weighted by (1 - p)^γ, so "
        "examples the model already gets right count less; 2 is the paper's; 0 is the plain cross-entropy "
        "(softmax) or binary cross-entropy (sigmoid). Classification only"))


class ResizeConfig(Section):
    enabled: bool = Field(True, description="progressive resizing on/off")
    sizes: list[tuple[int, int]] | None = Field(None, description=(
        "explicit `[[epoch, size], ...]`, starting at epoch 0, each size in force from its epoch on; "
        "overrides the ramp below"))
    start_scale: float = Field(0.5, gt=0, le=1, description="first size as a fraction of `train.image_size`")
    # The first half at start_scale (as in fast.ai's DAWNBench runs: half the epochs at half the
    # resolution), then up to full size by end_fraction. At 0.5 / 0.8 the training pixels are
    # about 0.47 of a full-size run.
    start_fraction: float = Field(0.5, ge=0, lt=1, description=(
        "the ramp up from the first size begins this far into training"))
    end_fraction: float = Field(0.8, gt=0, le=1, description="full size from this fraction of training on")
    step: int = Field(32, ge=1, description="sizes are multiples of this")
    # Below 2 x the model's stride its last stage sees a 1x1 map: a 3x3 kernel there multiplies
    # zero padding with all but its centre tap, so those taps get no gradient and keep their
    # initial values, which meet real pixels the first time the size grows (docs/training.md,
    # "Progressive resizing").
    min_size: int | Literal["auto"] = Field("auto", description=(
        "the ramp never goes below this size; `auto`: 2 x the model's total stride (64 px for a "
        "stride-32 ResNet), so every kernel of the last stage sees more than one pixel, and with pretrained "
        "weights the size they were trained at (timm's pretrained_cfg: 224 px for most ImageNet CNNs), so "
        "fine-tuning never shows them objects smaller than they learned. With `train.image_size` at or "
        "below it, training runs at full size throughout"))

    @model_validator(mode="after")
    def _ordered(self):
        if self.end_fraction <= self.start_fraction:
            raise ValueError("resize.end_fraction must be larger than resize.start_fraction")
        if isinstance(self.min_size, int) and self.min_size < 1:
            raise ValueError("resize.min_size must be a positive number of pixels or auto")
        if self.sizes is not None and (not self.sizes or self.sizes[0][0] != 0):
            raise ValueError("resize.sizes must start at epoch 0")
        return self


class CheckpointConfig(Section):
    every_epochs: int = Field(1, ge=1, description="checkpoint interval (and always after the last epoch)")
    # Off by default: a checkpoint holds the optimizer state too, several times the weights' size.
    keep: bool = Field(False, description="keep the last checkpoint once the fold is done")


_AUGMENT = (
    "albumentations transforms as `{name: Class, arg: value}`; a transform that takes `size` (or "
    "`height`/`width`) gets `train.image_size` unless it sets one. The tensor conversion is appended; "
    "normalization runs on the device, so leave `Normalize` out (refused). Each pipeline must end at "
    "image_size x image_size, uint8 (checked)")


class AugmentConfig(Section):
    train: list[dict[str, Any]] = Field([{"name": "Resize"}], description=f"training pipeline: {_AUGMENT}")
    valid: list[dict[str, Any]] = Field([{"name": "Resize"}], description=(
        "validation and test pipeline, as `augment.train`"))
    # Normalization runs on the device: the workers ship uint8, a quarter of float32's bytes.
    # `auto` is resolved when the whole config is made (Config): it depends on model.* too.
    mean: tuple[float, float, float] | Literal["auto"] = Field("auto", description=(
        "per-channel normalization mean, applied on the device; `auto`: the pretrained weights' own "
        "(timm's pretrained_cfg for `model.name`, e.g. 0.5 for the tf_* EfficientNets) when "
        "`model.pretrained` or `model.pretrained_file` loads weights, ImageNet's (0.485, 0.456, 0.406) when "
        "training from scratch"))
    std: tuple[float, float, float] | Literal["auto"] = Field("auto", description=(
        "per-channel normalization standard deviation, as `augment.mean` (ImageNet's: 0.229, 0.224, 0.225)"))

    @field_validator("train", "valid")
    @classmethod
    def _named(cls, steps):
        for i, step in enumerate(steps):
            if "name" not in step:
                raise ValueError(f"step {i} has no 'name' (an albumentations transform class)")
        return steps


class PredictConfig(Section):
    tta: list[Literal["hflip", "vflip", "transpose", "five_crop"]] = Field(default_factory=list, description=(
        "test-time augmentation of the OOF and test predictions, averaged over every combination: `hflip`, "
        "`vflip`, `transpose` (all three: the 8 symmetries of the square), `five_crop` (the 4 corners and the "
        "centre of the image enlarged by 1/0.875). The per-epoch validation that picks the best epoch runs "
        "without it; the OOF without it is kept beside (make oof scores both)"))
    tta_scales: list[float] = Field(default_factory=lambda: [1.0], description=(
        "TTA: the whole image also at these multiples of its size (e.g. [1.0, 1.15]); must hold 1.0"))
    tta_hflip: bool = Field(False, description="shorthand for `hflip` in `predict.tta`")
    batch_size: int | None = Field(None, ge=1, description=(
        "inference batch size per process; null: 2 x `train.batch_size`"))

    @field_validator("tta")
    @classmethod
    def _distinct_names(cls, names):
        if len(set(names)) != len(names):
            raise ValueError(f"names a view twice: {names}")
        return names

    @field_validator("tta_scales")
    @classmethod
    def _scales(cls, scales):
        if 1.0 not in scales or any(not 0.25 <= s <= 4 for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"must hold 1.0 (the plain prediction is one of the views) and distinct sizes "
                             f"between 0.25 and 4, got {scales}")
        return scales


class SubmissionConfig(Section):
    kind: Literal["auto", "label", "probability"] = Field("auto", description=(
        "`auto`: class-named columns get probabilities; a single column gets labels, or a probability "
        "for a binary/multilabel task scored by roc_auc or log_loss. `label` or `probability` force one"))
    threshold: float = Field(0.5, gt=0, lt=1, description=(
        "binary/multilabel labels: positive from this probability on"))


class DistillConfig(Section):
    teacher: str | None = Field(None, description=(
        "an experiment or blend under `runs_dir` whose out-of-fold predictions become part of each "
        "training row's target (never its in-fold predictions: those saw the row); null: no distillation"))
    weight: float = Field(0.5, ge=0, le=1, description=(
        "the teacher's share of the target: (1 - weight) x truth + weight x the teacher's OOF prediction"))


class PseudoConfig(Section):
    teacher: str | None = Field(None, description=(
        "an experiment or blend under `runs_dir` whose test predictions label the test images, which are "
        "added to every training fold (never to validation, the OOF or a score); null: no pseudo-labels"))
    threshold: float | None = Field(0.9, gt=0.5, lt=1, description=(
        "hard pseudo-labels for the test images the teacher is this sure of (every label, for multilabel); "
        "null: every test image with the teacher's probabilities as a soft target (regression: always)"))


class AuditConfig(Section):
    near_distance: int = Field(6, ge=0, le=32, description=(
        "`make audit`: two images are near-duplicates when their 64-bit perceptual hashes differ in at most "
        "this many bits (0: only pictures alike to the hash; two unrelated photographs differ in about 32)"))
    suspects: int = Field(50, ge=0, description=(
        "`make audit`: how many train rows with the lowest out-of-fold probability of their own label to list"))


class PostprocessConfig(Section):
    enabled: bool = Field(True, description=(
        "fit on the out-of-fold predictions what the metric rewards, and apply it to the submission: a "
        "temperature (log_loss), a threshold per label (binary/multilabel labels scored by accuracy or an "
        "F-score), cut-points (qwk on a regression). The CV score is nested: fitted on the other folds, "
        "scored on each fold; the score without it is reported too"))
    tta_weight: bool = Field(True, description=(
        "with TTA (`predict.tta`): fit the weight w of the TTA mean against the plain view (w x TTA + "
        "(1 - w) x plain, w in 0, 0.25, ..., 1) on the OOF's log loss, and apply it to the submission; "
        "scored nested (each fold's rows mixed by the weight chosen on the other folds). false: the TTA mean"))

