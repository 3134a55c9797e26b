"""The learning rate as a closed-form function of the optimizer-update count.

A pure function of the update count means resuming needs no scheduler state, and stepping it
once per optimizer update (after gradient accumulation) cannot be doubled by a launcher.
"""

from __future__ import annotations

import math

from .config import Config


def updates_per_epoch(n_train_rows: int, cfg: Config, num_processes: int) -> int:
    """Optimizer updates in one epoch: full batches (the last partial one is dropped) over all
    processes, grouped by gradient accumulation (a partial group still makes one update)."""
    global_batch = cfg.train.batch_size * num_processes
    batches = n_train_rows // global_batch
    if batches == 0:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} x {num_processes} process(es) is larger than "
            f"the {n_train_rows} training rows of a fold"
        )
    return math.ceil(batches / cfg.train.grad_accum)


def lr_at(update: int, cfg: Config, per_epoch: int) -> float:
    """lr for the update that follows `update` earlier ones.

    warmup (first warmup_epochs): lr_max * (update + 1) / warmup_updates
    cosine: lr_min + (lr_max - lr_min) * (1 + cos(pi * t / T)) / 2, t counted after warmup,
            T = the remaining updates of training
    constant: lr_max after warmup
    """
    s, peak = cfg.scheduler, cfg.train.lr
    total = per_epoch * cfg.train.epochs
    warmup = min(round(s.warmup_epochs * per_epoch), total - 1)
    if update < warmup:
        return peak * (update + 1) / warmup
    if s.name == "constant":
        return peak
    t, span = update - warmup, max(1, total - warmup)
    return s.lr_min + 0.5 * (peak - s.lr_min) * (1 + math.cos(math.pi * min(t, span) / span))
