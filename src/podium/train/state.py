"""What a fold's training carries from one epoch to the next, and a checkpoint saves: FoldState."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from podium.evaluate.metrics import is_better


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
