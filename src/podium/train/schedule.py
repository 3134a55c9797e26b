"""Learning rate and image size as functions of training progress.

The learning rate is a closed-form function of the optimizer-update count, so a resumed run
continues on the same curve with no scheduler state, and podium steps it itself once per update
(after gradient accumulation): a launcher cannot step it twice.

    lr(t) = lr_min + 1/2 (lr_max * gamma^i - lr_min) (1 + cos(pi * t_cur / T_i))

in cycle i of length T_i = T_0 * t_mult^i updates (t counted after the warmup), with a linear
warmup from lr_min to lr_max over the first warmup updates. The formula is timm's
CosineLRScheduler, which podium uses rather than writing it again.
"""

from __future__ import annotations

import math

import torch
from timm.scheduler import CosineLRScheduler

from podium.config import Config
from podium.errors import PodiumError

NO_CYCLE_LIMIT = 10**9


def updates_per_epoch(n_train_rows: int, cfg: Config, num_processes: int) -> int:
    """Optimizer updates in one epoch: full batches (the last partial one is dropped) over all
    processes, grouped by gradient accumulation (a partial group still makes one update)."""
    global_batch = cfg.train.batch_size * num_processes
    batches = n_train_rows // global_batch
    if batches == 0:
        raise PodiumError(
            f"train.batch_size={cfg.train.batch_size} x {num_processes} process(es) is larger than "
            f"the {n_train_rows} training rows of a fold"
        )
    return math.ceil(batches / cfg.train.grad_accum)


def first_cycle_updates(cfg: Config, per_epoch: int, warmup: int) -> int:
    """t0_epochs in updates; by default two cycles (T0 and T0 * t_mult) that end with training,
    rounded up so that the last update never starts a new cycle."""
    s = cfg.scheduler
    if s.t0_epochs is not None:
        return max(1, round(s.t0_epochs * per_epoch))
    return max(1, math.ceil((per_epoch * cfg.train.epochs - warmup) / (1 + s.t_mult)))


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, per_epoch: int) -> CosineLRScheduler:
    """timm's cosine scheduler over optimizer updates; call .step_update(t) before update t."""
    s, total = cfg.scheduler, per_epoch * cfg.train.epochs
    warmup = min(round(s.warmup_epochs * per_epoch), total - 1)
    if s.name == "cosine_restarts":
        t_initial, limit, lr_min = first_cycle_updates(cfg, per_epoch, warmup), NO_CYCLE_LIMIT, s.lr_min
    elif s.name == "cosine":
        t_initial, limit, lr_min = max(1, total - warmup), 1, s.lr_min
    else:  # constant: a cosine whose floor is its peak
        t_initial, limit, lr_min = max(1, total), 1, cfg.train.lr
    return CosineLRScheduler(
        optimizer, t_initial=t_initial, lr_min=lr_min, cycle_mul=s.t_mult, cycle_decay=s.cycle_decay,
        cycle_limit=limit, warmup_t=warmup, warmup_lr_init=min(s.lr_min, cfg.train.lr), warmup_prefix=True,
        t_in_epochs=False,
    )


def _reference(cfg: Config, per_epoch: int) -> CosineLRScheduler:
    param = torch.nn.Parameter(torch.zeros(1))
    return lr_scheduler(torch.optim.SGD([param], lr=cfg.train.lr), cfg, per_epoch)


def lr_curve(cfg: Config, per_epoch: int) -> list[float]:
    """The lr of every optimizer update of training, from the config alone."""
    sched = _reference(cfg, per_epoch)
    return [sched._get_lr(t)[0] for t in range(per_epoch * cfg.train.epochs)]


def size_at(epoch: int, cfg: Config) -> int:
    """The training image size of an epoch (progressive resizing); validation, OOF and test
    always use train.image_size.

    Explicit `resize.sizes`: the last [epoch, size] entry at or before this epoch.
    Ramp: start_scale * image_size until start_fraction of training, then linear up to
    image_size, reached at end_fraction and kept to the end, so at least the last
    (1 - end_fraction) of the epochs run at full size. Sizes are multiples of `step`, never
    below smallest_size (explicit sizes are taken as written).
    """
    r, full, epochs = cfg.resize, cfg.train.image_size, cfg.train.epochs
    if not r.enabled:
        return full
    if r.sizes is not None:
        return [size for start, size in r.sizes if start <= epoch][-1]
    full_epochs = max(1, math.ceil((1 - r.end_fraction) * epochs - 1e-9))
    ramp_end = epochs - full_epochs  # first epoch at full size
    ramp_start = min(round(r.start_fraction * epochs), ramp_end)
    if epoch >= ramp_end:
        return full
    start = r.start_scale * full
    progress = 0.0 if epoch <= ramp_start else (epoch - ramp_start) / (ramp_end - ramp_start)
    size = start + (full - start) * progress
    floor = math.ceil(smallest_size(cfg) / r.step) * r.step
    return int(min(full, max(floor, round(size / r.step) * r.step)))


def smallest_size(cfg: Config) -> int:
    """The ramp's floor, `resize.min_size`; `auto`: twice the model's total stride, the least
    size at which the last stage's feature map is more than one pixel across, and with pretrained
    weights never below the size they were trained at (timm's pretrained_cfg input_size)."""
    if cfg.resize.min_size != "auto":
        return int(cfg.resize.min_size)
    from podium.train.models import output_stride, weights_input_size

    return max(2 * output_stride(cfg.model.name), weights_input_size(cfg.model) or 0)


def resize_note(cfg: Config) -> str | None:
    """A line to print when progressive resizing is on but has no room: the floor is at or above
    train.image_size, so every epoch trains at full size."""
    r, floor = cfg.resize, smallest_size(cfg)
    if not r.enabled or r.sizes is not None or floor < cfg.train.image_size:
        return None
    from podium.train.models import weights_input_size

    if r.min_size != "auto":
        why = "resize.min_size"
    elif floor == weights_input_size(cfg.model):
        why = f"the size {cfg.model.name}'s pretrained weights were trained at, resize.min_size: auto"
    else:
        why = f"2 x {cfg.model.name}'s stride of {floor // 2}, resize.min_size: auto"
    return (f"progressive resizing: no room below train.image_size={cfg.train.image_size} "
            f"(the smallest size is {floor} px: {why}); every epoch trains at full size")
