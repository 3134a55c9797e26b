"""Prediction: probabilities from a model's logits, averaged over TTA views, and one pass over a loader.

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

from podium.predict.tta import PLAIN


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


def logits_of(model, images: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
    """The model's logits for a normalized batch; a model with metadata (data.features: `features`
    of shape (n, F), F > 0) reads the rows' features too."""
    if features is None or features.shape[-1] == 0:
        return model(images)
    return model(images, features.to(images.device, non_blocking=True))


def forward_views(model, images: torch.Tensor, task: str, views=(PLAIN,),
                  features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of the plain view, for the loss; probabilities of each view (V, n, C)) of a normalized
    batch. `views[0]` must be the plain view (predict.tta.views puts it first). A view changes the
    image only: each reads the same metadata."""
    if views[0] != PLAIN:
        raise ValueError(f"the first view must be the plain one, not {views[0].name}")
    logits = logits_of(model, images, features)
    probs = [probabilities(logits, task)] + [probabilities(logits_of(model, v.apply(images), features), task)
                                             for v in views[1:]]
    return logits, torch.stack(probs)


@torch.no_grad()
def predict(model, loader, normalize, accelerator, task: str, *, views=(PLAIN,), with_loss: bool,
            autocast: bool = True):
    """(probabilities (n, C) averaged over `views`, mean loss, probabilities of the plain view (n, C)), each in
    the dataset's row order, for every row of `loader`'s dataset. Without TTA (one view) the two are the same.
    `autocast`: in the training precision (the per-epoch validation); off: in float32.

    Each batch carries its row indices; gather_for_metrics drops the rows a distributed
    sampler repeats to even out the last batch, and the check below proves every row came back
    exactly once before anything is written by id.
    """
    model.eval()
    means, plains, rows, losses = [], [], [], []
    for images, features, y, idx in loader:
        with accelerator.autocast() if autocast else contextlib.nullcontext():
            logits, p = forward_views(model, normalize(images), task, views, features)
        loss = per_sample_loss(logits, y, task) if with_loss else torch.zeros(len(idx), device=p.device)
        mean, plain, idx, loss = accelerator.gather_for_metrics((p.mean(dim=0).contiguous(), p[0].contiguous(), idx,
                                                                  loss))
        means.append(mean.cpu())
        plains.append(plain.cpu())
        rows.append(idx.cpu())
        losses.append(loss.cpu())
    rows_np = torch.cat(rows).numpy()
    n = len(loader.dataset)
    if len(rows_np) != n or not np.array_equal(np.sort(rows_np), np.arange(n)):
        raise RuntimeError(f"prediction gathered {len(rows_np)} rows for a dataset of {n}: not each row once")
    order = np.argsort(rows_np)
    return torch.cat(means).numpy()[order], float(torch.cat(losses).mean()), torch.cat(plains).numpy()[order]
