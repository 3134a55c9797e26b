"""`make lr-find`: the lr range test (train/lr_range.py) for the config's model, weights, batch
size, optimizer and loss, on fold 0's training rows; writes runs/<exp>/lr_find.csv and
lr_find.png and prints a suggested `train.lr`.

It trains in this process, on one device, at the full image size, without Mixup/CutMix (mixing
makes each batch's loss noisier, not the lr that diverges different) and without freezing; with
layer decay, every group keeps its ratio to the top lr. The model is thrown away afterwards.
"""

from __future__ import annotations

import pandas as pd
import torch
from accelerate.utils import set_seed

from podium import artifacts
from podium.config import Config
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.plots import plot_lr_find
from podium.runs import layout
from podium.stages.check import preflight
from podium.stages.folds import run_folds
from podium.train.loaders import build_loaders
from podium.train.loop import batch_loss, build_step, start_accelerator
from podium.train.lr_range import range_test
from podium.train.precision import resolve

FOLD = 0


def run_lr_find(cfg: Config, *, updates: int = 200, start: float = 1e-7, end: float = 10.0) -> float:
    """Returns the suggested lr (the centered loss's lowest point / 10)."""
    if updates < 10:
        raise PodiumError(f"UPDATES={updates}: the range test needs at least 10 updates (a few hundred is usual)")
    if not 0 < start < end:
        raise PodiumError(f"LR_START={start}, LR_END={end}: need 0 < LR_START < LR_END")
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    speed = resolve(cfg, comp.num_outputs)
    accelerator = start_accelerator(cfg, 1, speed)
    set_seed(cfg.seed)
    data = build_loaders(cfg, comp, FOLD, data_hash)
    step, data = build_step(cfg, comp, accelerator, data, speed)
    data.size_state.set(cfg.train.epochs - 1, cfg.train.image_size)  # the full size throughout
    row_weights = torch.from_numpy(data.row_weights).to(accelerator.device) if data.row_weights is not None else None
    scales = [group.get("lr_scale", 1.0) for group in step.optimizer.param_groups]

    def set_lr(lr: float) -> None:
        for group, scale in zip(step.optimizer.param_groups, scales, strict=True):
            group["lr"] = lr * scale

    def batches():
        epoch = 0
        while True:  # as many passes over the rows as the updates need
            data.train_loader.set_epoch(epoch)
            yield from data.train_loader
            epoch += 1

    stream = batches()
    step.model.train()

    def update() -> float:
        """One optimizer update (grad_accum batches); the mean loss of its batches."""
        losses = []
        while True:
            images, features, y, rows = next(stream)
            with accelerator.accumulate(step.model):
                loss = batch_loss(step, step.normalize(images), features, y, rows, None, row_weights)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.train.clip_grad_norm:
                    accelerator.clip_grad_norm_(step.model.parameters(), cfg.train.clip_grad_norm)
                step.optimizer.step()
                step.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if accelerator.sync_gradients:
                return sum(losses) / len(losses)

    say(f"lr range test: {cfg.model.name}, {step.weights or 'random initial weights'}, batch {cfg.train.batch_size}, "
        f"{cfg.train.optimizer}, lr {start:g} to {end:g} over {updates} updates on fold {FOLD}'s "
        f"{len(data.train_df)} training rows")
    result = range_test(set_lr, update, start, end, updates)
    table = pd.DataFrame({"lr": result.lrs, "loss": result.losses, "centered_loss": result.centered,
                          "moving_average": result.smoothed})
    csv = artifacts.write_csv(cfg.run_dir / layout.LR_FIND_CSV, table)
    png = plot_lr_find(table, result.lowest, result.suggestion, cfg.run_dir / layout.LR_FIND_PNG)
    stop = (f"diverged at lr {result.lrs[-1]:.3g}" if result.diverged else
            f"did not diverge by lr {end:g} (LR_END higher shows where it does)")
    say(f"{len(result.lrs)} updates; {stop}; lowest centered loss at lr {result.lowest:.3g}",
        f"suggested train.lr={result.suggestion:.2g} (a tenth of the lowest point; config has {cfg.train.lr:g})",
        f"wrote {csv} and {png}")
    return result.suggestion
