"""Models from timm, from scratch or with verified pretrained weights: a local file, or timm's hub
weights through huggingface_hub's cache (fetched once, offline after)."""

from __future__ import annotations

from functools import cache

import timm
import torch
from timm.models import get_pretrained_cfg

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


def create_model(cfg: ModelConfig, num_outputs: int) -> torch.nn.Module:
    """A timm model with `num_outputs` logits, from cfg.pretrained_file when one is named."""
    return build_model(cfg, num_outputs)[0]


def build_model(cfg: ModelConfig, num_outputs: int) -> tuple[torch.nn.Module, Loaded | None]:
    """(the model, what its weights were loaded from): a timm model with `num_outputs` logits,
    filled from the hub (cfg.pretrained) or cfg.pretrained_file, every tensor verified (train/weights.py)."""
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
    if train.layer_decay is not None and not hasattr(model, "group_matcher"):
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
