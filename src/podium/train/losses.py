"""Soft targets, label smoothing, and the training loss that takes them.

The training loss always sees rows of probabilities: one-hot labels, possibly mixed (mix.py),
then smoothed exactly once here. Validation loss, OOF and scores use the true labels
(predict.per_sample_loss), never these.

With `loss.focal_gamma` > 0 the training loss is the focal loss (FocalLoss); validation loss
stays the plain cross-entropy, so epochs and runs compare on one scale.

A regression target is one standardized value per row: Mixup and CutMix mix it as they mix
labels (the mixed image's target is the same weighted mean of the two targets), and label
smoothing, which has no meaning for a number, leaves it alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy


def soft_targets(y: torch.Tensor, task: str, num_outputs: int) -> torch.Tensor:
    """Labels as rows of probabilities: one-hot (multiclass), (n, 1) (binary), (n, L) (multilabel);
    a regression target as (n, 1) values."""
    if y.dim() == 2:  # already rows of probabilities (a teacher's part: teachers.py)
        return y.float()
    if task == "multiclass":
        return F.one_hot(y, num_outputs).float()
    if task in ("binary", "regression"):
        return y.float().unsqueeze(1)
    return y.float()


def smooth(targets: torch.Tensor, eps: float, task: str) -> torch.Tensor:
    """Label smoothing.

    softmax (multiclass): q = (1 - eps) * y + eps / K  -- rows still sum to 1; the same as
        torch.nn.CrossEntropyLoss(label_smoothing=eps).
    sigmoid (binary, multilabel): q = (1 - eps) * y + eps / 2 per output, so eps = 0.2 is
        exactly the "1 -> 0.9, 0 -> 0.1" rule. That rule applied to K > 2 softmax classes would
        give rows summing to 0.9 + 0.1 * (K - 1), which is not a distribution.
    """
    if smoothing_used(eps, task) == 0:
        return targets
    k = targets.shape[1] if task == "multiclass" else 2
    return targets * (1 - eps) + eps / k


def smoothing_used(eps: float, task: str) -> float:
    """The smoothing a task gets: none for a regression target."""
    return 0.0 if task == "regression" else eps


class FocalLoss(torch.nn.Module):
    """Focal loss (Lin et al. 2017) on soft targets q, the mean over rows (sigmoid: over outputs).

    softmax (multiclass): sum_c -q_c (1 - p_c)^gamma log p_c per row;
    sigmoid (binary, multilabel): -[q (1 - p)^gamma log p + (1 - q) p^gamma log(1 - p)] per output,
        the softmax form with the two classes "on" and "off".
    The weight (1 - p)^gamma shrinks the terms the model already gets right; gamma = 0 is the
    cross-entropy (train_loss_fn then uses timm's and torch's own losses).
    """

    def __init__(self, gamma: float, *, sigmoid: bool):
        super().__init__()
        self.gamma, self.sigmoid = gamma, sigmoid

    def _weight(self, one_minus_p: torch.Tensor) -> torch.Tensor:
        # Clamped: (0)^gamma has an infinite gradient for gamma < 1 once a probability rounds to 1.
        return one_minus_p.clamp(min=torch.finfo(one_minus_p.dtype).tiny) ** self.gamma

    def per_row(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.sigmoid:
            log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
            loss = -(target * self._weight(log_not_p.exp()) * log_p
                     + (1 - target) * self._weight(log_p.exp()) * log_not_p)
            return loss.mean(dim=-1)
        log_p = F.log_softmax(logits, dim=-1)
        return -(target * self._weight(-torch.expm1(log_p)) * log_p).sum(dim=-1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.per_row(logits, target).mean()


def train_loss_fn(task: str, focal_gamma: float = 0.0):
    # timm's soft-target cross-entropy: with a one-hot row it is the usual cross-entropy.
    if task == "regression":
        return torch.nn.MSELoss()
    if focal_gamma > 0:
        return FocalLoss(focal_gamma, sigmoid=task != "multiclass")
    return SoftTargetCrossEntropy() if task == "multiclass" else torch.nn.BCEWithLogitsLoss()


def per_row_loss(loss_fn: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`loss_fn` (one of train_loss_fn's) row by row: its batch mean is the mean of these."""
    if isinstance(loss_fn, FocalLoss):
        return loss_fn.per_row(logits, target)
    if isinstance(loss_fn, SoftTargetCrossEntropy):
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1)
    if isinstance(loss_fn, torch.nn.BCEWithLogitsLoss):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=-1)
    if isinstance(loss_fn, torch.nn.MSELoss):
        return F.mse_loss(logits, target, reduction="none").mean(dim=-1)
    raise TypeError(f"no per-row form of {type(loss_fn).__name__}")


def weighted_loss(loss_fn: torch.nn.Module, logits: torch.Tensor, target: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """The batch's loss with row weights (data.extra's `weight`): sum_i w_i l_i / sum_i w_i, so a
    row of weight 2 counts as that row twice and the lr keeps its meaning."""
    w = weights.to(logits.dtype)
    return (w * per_row_loss(loss_fn, logits, target)).sum() / w.sum()

