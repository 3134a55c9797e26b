"""Models from timm, from scratch or with verified pretrained weights: a local file, or timm's hub
weights through huggingface_hub's cache (fetched once, offline after)."""

from __future__ import annotations

from functools import cache

import timm
import torch
from timm.models import get_pretrained_cfg, group_parameters

from podium.config import Config
from podium.config.schema import FINE_TUNING
from podium.config.sections import ModelConfig
from podium.errors import PodiumError
from podium.train.weights import Loaded, check_hub, load_weights, verify_hub_load, weights_path


def check_name(name: str) -> None:
    """A one-line error naming the config key when timm has no such model."""
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise PodiumError(f"config key 'model.name': timm has no model '{name}'{hint}")


class WithFeatures(torch.nn.Module):
    """A timm model that also reads the row's metadata (data.features): a two-layer MLP's output is
    concatenated to the pooled image features, and a new linear classifier reads both (the SIIM-ISIC
    melanoma winners' design). Called as model(images, features).

    The timm model's parameters keep their names under `body.`, and timm's optimizer factory still
    finds its layers (group_matcher) and its no-weight-decay tensors, so layer decay, weight decay
    and gradient checkpointing work as they do without metadata."""

    def __init__(self, body: torch.nn.Module, n_features: int, hidden: int, num_outputs: int, *,
                 zero_head: bool, drop_rate: float = 0.0):
        super().__init__()
        body.reset_classifier(0)  # the body now returns its pooled (pre-logits) features
        width = int(getattr(body, "head_hidden_size", None) or body.num_features)
        self.body = body
        self.meta = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.SiLU(), torch.nn.Dropout(drop_rate),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU())
        self.head = torch.nn.Linear(width + hidden, num_outputs)
        if zero_head:
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()

    def forward(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        pooled = self.body(images)
        return self.head(torch.cat([pooled, self.meta(features.to(pooled.dtype))], dim=1))

    def get_classifier(self):
        # Both new parts: what train.freeze_epochs trains while the image model is frozen.
        return [self.head, self.meta]

    def group_matcher(self, coarse: bool = False):
        """The body's layers as timm groups them; the MLP and the head above the top one."""
        inner = group_parameters(self.body, self.body.group_matcher(coarse), reverse=True)
        top = max(inner.values(), default=0) + 1
        return lambda name: inner[name[len("body."):]] if name.startswith("body.") else top

    def no_weight_decay(self) -> set[str]:
        inner = self.body.no_weight_decay() if hasattr(self.body, "no_weight_decay") else set()
        return {f"body.{name}" for name in inner}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.body.set_grad_checkpointing(enable)


def image_model(model: torch.nn.Module) -> torch.nn.Module:
    """The timm model itself: the body of a model with metadata."""
    return model.body if isinstance(model, WithFeatures) else model


def create_model(cfg: ModelConfig, num_outputs: int, n_features: int = 0) -> torch.nn.Module:
    """A timm model with `num_outputs` logits, from cfg.pretrained_file when one is named."""
    return build_model(cfg, num_outputs, n_features)[0]


def build_model(cfg: ModelConfig, num_outputs: int, n_features: int = 0) -> tuple[torch.nn.Module, Loaded | None]:
    """(the model, what its weights were loaded from): a timm model with `num_outputs` logits,
    filled from the hub (cfg.pretrained) or cfg.pretrained_file, every tensor verified (train/weights.py);
    with `n_features` > 0, wrapped to read that many metadata columns too (WithFeatures)."""
    check_name(cfg.name)
    kwargs: dict = {"num_classes": num_outputs, "drop_rate": cfg.drop_rate}
    if cfg.drop_path_rate > 0:  # only when asked: some models (Inception, DLA, ...) take no such argument
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    path = weights_path(cfg.pretrained_file) if cfg.pretrained_file else None
    repo = check_hub(cfg.name) if cfg.pretrained else None  # offline and not cached: refused before building
    try:
        model = timm.create_model(cfg.name, pretrained=cfg.pretrained, **kwargs)
    except TypeError as exc:
        if "drop_path_rate" in kwargs and "drop_path_rate" in str(exc):
            raise PodiumError(f"config key 'model.drop_path_rate': timm's {cfg.name} has no drop path "
                              "(stochastic depth); set it to 0") from None
        raise
    if repo is not None:
        loaded = verify_hub_load(model, repo, cfg.name)
    else:
        loaded = load_weights(model, path, cfg.name, remap=cfg.pretrained_remap) if path is not None else None
    if cfg.head_init == "zero" and (loaded is None or loaded.classifier == "new"):
        with torch.no_grad():
            for param in head_parameters(model):
                param.zero_()
    if n_features:
        model = WithFeatures(model, n_features, cfg.features_hidden, num_outputs, zero_head=cfg.head_init == "zero",
                             drop_rate=cfg.drop_rate)
    return model, loaded


@cache
def output_stride(name: str) -> int:
    """How many input pixels one pixel of the model's last feature map spans (32 for ResNets,
    EfficientNets and ConvNeXts, 16 for ViT-*/16), from timm's feature_info. The model is built on
    the meta device: no memory, no weights, a few milliseconds."""
    check_name(name)
    with torch.device("meta"):
        model = timm.create_model(name)
    info = getattr(model, "feature_info", None)
    # A model without feature_info: the common total stride of ImageNet CNNs.
    return int(info[-1]["reduction"]) if info else 32


def weights_input_size(cfg: ModelConfig) -> int | None:
    """The image size the model's pretrained weights were trained at (timm's pretrained_cfg
    input_size: 224 for most ImageNet CNNs), or None when no weights are loaded or timm has none."""
    if not cfg.loads_weights:
        return None
    found = get_pretrained_cfg(cfg.name)
    return int(found.input_size[-1]) if found is not None and found.input_size else None


def head_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The classifier's parameters (timm's `get_classifier()`; a distilled model's two heads)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = head if isinstance(head, (tuple, list)) else [head]
    return [p for h in heads if isinstance(h, torch.nn.Module) for p in h.parameters()]


def backbone_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Every parameter but the classifier's: what `train.freeze_epochs` freezes."""
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def check_fine_tuning(model: torch.nn.Module, cfg: Config) -> None:
    """Refuse, before any training, a `train` key that this model cannot honour (a one-line
    PodiumError naming the key). Turns gradient checkpointing on in `model` when asked."""
    name, train = cfg.model.name, cfg.train
    if train.layer_decay is not None and not hasattr(image_model(model), "group_matcher"):
        came = (" (the fine-tuning default with pretrained weights)"
                if train.layer_decay == FINE_TUNING.get("train.layer_decay") else "")
        raise PodiumError(f"config key 'train.layer_decay'{came}: timm's {name} has no group_matcher, so its layers "
                          "cannot be told apart; set train.layer_decay: null")
    if train.grad_checkpointing:
        try:
            model.set_grad_checkpointing(True)
        except (AttributeError, AssertionError, NotImplementedError):  # timm asserts where it has none
            raise PodiumError(f"config key 'train.grad_checkpointing': timm's {name} does not support gradient "
                              "checkpointing; set it to false") from None
    if train.freeze_epochs and not head_parameters(model):
        raise PodiumError(f"config key 'train.freeze_epochs': timm's {name} has no classifier with parameters "
                          "(get_classifier) to train while the rest is frozen; set it to 0")
