"""What a fold's training works with (Step: the model, optimizer, scheduler, built once) and what it
carries from one epoch to the next, which a checkpoint saves (FoldState: the history, the best
epoch's weights and, for checkpoint averaging, the k best epochs' weights)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from timm.utils import ModelEmaV3

from podium.config import Config
from podium.data.competition import Competition
from podium.data.datasets import Normalize
from podium.evaluate.metrics import higher_is_better, is_better
from podium.train.weights import Loaded


@dataclass
class Step:
    """Everything one training step uses, built once per fold (build_step)."""

    cfg: Config
    comp: Competition
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm CosineLRScheduler, stepped by update count (schedule.py)
    normalize: Normalize
    loss_fn: torch.nn.Module
    ema: ModelEmaV3 | None = None
    backbone: list[torch.nn.Parameter] = field(default_factory=list)  # frozen for train.freeze_epochs
    weights: Loaded | None = None  # what the initial weights were loaded from (None: random)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, saved and predicted with: the EMA when it is on."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class FoldState:
    """What the loop carries from one epoch to the next; a checkpoint saves exactly this. The lr
    and every random draw are functions of (seed, epoch, update), so nothing else is needed."""

    epoch: int = 0  # the next epoch to train
    update: int = 0  # optimizer updates so far
    history: list[dict] = field(default_factory=list)  # one row per epoch (history.csv)
    best_score: float | None = None
    best_epoch: int = -1
    best_weights: dict[str, torch.Tensor] | None = None  # on the CPU, on every process
    best_full: bool = False  # the best epoch was validated at the full image size
    # train.average_top_k > 1: the k best epochs, best first: dicts of score, epoch, full, and their weights in
    # `top_weights` (CPU, every process), in the same order.
    top: list[dict] = field(default_factory=list)
    top_weights: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def keep_if_best(self, score: float, epoch: int, metric: str, weights: dict[str, torch.Tensor], *,
                     full: bool) -> bool:
        """Keep these weights if the epoch is the best so far. Scores at different image sizes do
        not compare: once an epoch was validated at the full size, only full-size epochs compete,
        and the first of them replaces any smaller one. The first epoch always counts, so a metric
        that is NaN throughout still leaves weights."""
        if self.best_weights is not None:
            if self.best_full and not full:
                return False
            if self.best_full == full and not is_better(metric, score, self.best_score):
                return False
        self.best_score, self.best_epoch, self.best_full = score, epoch, full
        self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
        return True

    def keep_top(self, k: int, score: float, epoch: int, metric: str, weights: dict[str, torch.Tensor], *,
                 full: bool) -> None:
        """Keep these weights among the k best epochs. As for the best epoch, scores at different image sizes do
        not compare: the first full-size epoch clears any smaller ones, and a smaller epoch never joins full-size
        ones. Ties go to the earlier epoch; a NaN score ranks last."""
        if k < 2 or (not full and any(t["full"] for t in self.top)):
            return
        entries = [(t, w) for t, w in zip(self.top, self.top_weights, strict=True) if t["full"] or not full]
        entries.append(({"score": float(score), "epoch": epoch, "full": full},
                         {n: v.detach().to("cpu", copy=True) for n, v in weights.items()}))
        sign = -1.0 if higher_is_better(metric) else 1.0

        def rank(entry):
            s = entry[0]["score"]
            return (np.isnan(s), sign * s if not np.isnan(s) else 0.0, entry[0]["epoch"])

        entries = sorted(entries, key=rank)[:k]
        self.top = [t for t, _ in entries]
        self.top_weights = [w for _, w in entries]

