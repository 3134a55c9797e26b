"""Prediction: probabilities from a model's logits, flip TTA, and one pass over a loader.

The training loop and the offline bundle's predict.py both use this module; it does not import
the training loop, Accelerate or the run folder.

Probabilities are (n, C) everywhere: C = the competition's probability columns (one for a
binary task, P(class 1)), the shape oof.csv and test.csv hold (runs.layout.Predictions).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """(n, C): softmax over the classes (multiclass), a sigmoid per output (binary, multilabel),
    the output itself (regression: a value, not a probability)."""
    logits = logits.float()
    if task == "regression":
        return logits
    return logits.softmax(dim=1) if task == "multiclass" else logits.sigmoid()


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Validation loss against the true labels, one value per row (so it can be gathered)."""
    logits = logits.float()
    if task == "multiclass":
        return F.cross_entropy(logits, y, reduction="none")
    target = y.float().view(logits.shape)
    if task == "regression":
        return F.mse_loss(logits, target, reduction="none").mean(dim=1)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)


def forward_probs(model, images: torch.Tensor, task: str, *, tta_hflip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, probabilities) of a normalized batch; with TTA the probabilities are averaged
    with those of the mirrored batch (the logits stay the plain ones, for the loss)."""
    logits = model(images)
    p = probabilities(logits, task)
    if tta_hflip:
        p = (p + probabilities(model(images.flip(3)), task)) / 2
    return logits, p


@torch.no_grad()
def predict(model, loader, normalize, accelerator, task: str, *, tta_hflip: bool, with_loss: bool,
            autocast: bool = True):
    """(probabilities (n, C) in the dataset's row order, mean loss) for every row of `loader`'s dataset.
    `autocast`: in the training precision (the per-epoch validation); off: in float32.

    Each batch carries its row indices; gather_for_metrics drops the rows a distributed
    sampler repeats to even out the last batch, and the check below proves every row came back
    exactly once before anything is written by id.
    """
    model.eval()
    probs, rows, losses = [], [], []
    for images, y, idx in loader:
        with accelerator.autocast() if autocast else contextlib.nullcontext():
            logits, p = forward_probs(model, normalize(images), task, tta_hflip=tta_hflip)
        loss = per_sample_loss(logits, y, task) if with_loss else torch.zeros(len(idx), device=p.device)
        p, idx, loss = accelerator.gather_for_metrics((p.contiguous(), idx, loss))
        probs.append(p.cpu())
        rows.append(idx.cpu())
        losses.append(loss.cpu())
    probs_np = torch.cat(probs).numpy()
    rows_np = torch.cat(rows).numpy()
    n = len(loader.dataset)
    if len(rows_np) != n or not np.array_equal(np.sort(rows_np), np.arange(n)):
        raise RuntimeError(f"prediction gathered {len(rows_np)} rows for a dataset of {n}: not each row once")
    order = np.argsort(rows_np)
    return probs_np[order], float(torch.cat(losses).mean())
