"""Models from timm. Nothing is downloaded: weights come from a local file or not at all."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from .config import ModelConfig
from .errors import PodiumError


def create_model(cfg: ModelConfig, num_outputs: int) -> torch.nn.Module:
    """A timm model with `num_outputs` logits; from cfg.pretrained_file when one is named.

    timm's pretrained_cfg_overlay=dict(file=...) loads the local file in place of a hub download
    (what an offline Kaggle kernel needs) and drops the classifier when its size differs.
    """
    if cfg.name not in timm.list_models() and cfg.name.split(".")[0] not in timm.list_models():
        close = timm.list_models(f"*{cfg.name.split('.')[0][:6]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise PodiumError(f"config key 'model.name': timm has no model '{cfg.name}'{hint}")
    kwargs: dict = {"num_classes": num_outputs, "drop_rate": cfg.drop_rate}
    if cfg.pretrained_file:
        path = Path(cfg.pretrained_file)
        if not path.is_file():
            raise PodiumError(f"config key 'model.pretrained_file': file not found: {path}")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path.resolve())})
    return timm.create_model(cfg.name, **kwargs)
