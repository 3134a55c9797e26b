"""The optimizer: timm's factory over the model's parameter groups, and freezing the backbone."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2

from podium.config import Config


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) from timm's factory over the model's parameters, already on their
    device, in groups: weight decay only on parameters of 2 or more dimensions, none on biases and
    normalization weights (filter_bias_and_bn; He et al. 2019). With `train.layer_decay`, timm makes
    one group per layer (its group_matcher) with an `lr_scale` that the scheduler multiplies the
    lr by: 1 at the top, `layer_decay` times less for each layer below.

    AdamW runs its fused kernel where torch has one for the device: one kernel for all
    parameters instead of a loop over tensors, which matters most for small images, where the
    update is a large share of a step.
    """
    t = cfg.train
    groups = dict(lr=t.lr, weight_decay=t.weight_decay, filter_bias_and_bn=True, layer_decay=t.layer_decay)
    if t.optimizer == "sgd":
        return create_optimizer_v2(model, "sgd", momentum=t.momentum, nesterov=t.momentum > 0, **groups)
    try:
        return create_optimizer_v2(model, "adamw", fused=True, **groups)
    except RuntimeError:  # no fused kernel for this device in this torch
        return create_optimizer_v2(model, "adamw", **groups)


def scheduled_lr(optimizer: torch.optim.Optimizer) -> float:
    """The schedule's lr now (a layer-decayed group runs at it times its `lr_scale`)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


def freeze(params: list[torch.nn.Parameter], *, frozen: bool) -> None:
    """Freeze or free `params` (the backbone during `train.freeze_epochs`). A frozen parameter
    gets no gradient, and torch's optimizers skip every parameter whose .grad is None: no update,
    no weight decay, no moments; its optimizer state starts when it is freed. BatchNorm running
    statistics still follow the data (the model is in train mode)."""
    for p in params:
        p.requires_grad_(not frozen)
        if frozen:
            p.grad = None
