"""Training one fold: a plain Accelerate loop, top to bottom.

Run under `accelerate launch` (the `podium train` command builds that command line and writes
the worker's inputs to fold<k>/worker.json). Every process runs `train_fold`; only the main
process writes files. `train_fold` reads as its phases: start Accelerate, build the loaders,
build the model and optimizer, resume, the epoch loop (kept in view), finish.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.tracking import GeneralTracker
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from tqdm.auto import tqdm

from podium import artifacts
from podium.config import Config
from podium.config.schema import fine_tuning_note
from podium.console import say
from podium.data.competition import Competition, load_competition
from podium.data.datasets import Normalize
from podium.evaluate.metrics import score_all
from podium.predict.forward import logits_of, predict
from podium.runs import layout
from podium.runs.provenance import provenance
from podium.train.checkpoint import load_checkpoint, save_checkpoint
from podium.train.finish import finish
from podium.train.loaders import FoldData, build_loaders
from podium.train.losses import smooth, smoothing_used, soft_targets, train_loss_fn, weighted_loss
from podium.train.mix import mix, mixing_on
from podium.train.models import backbone_parameters, build_model
from podium.train.optimizer import build_optimizer, freeze, scheduled_lr
from podium.train.precision import Speed, resolve as resolve_speed
from podium.train.schedule import lr_scheduler, resize_note, size_at, updates_per_epoch
from podium.train.state import FoldState, Step
from podium.train.trial_report import TrialReporter

# ---------------------------------------------------------------------------------------------
# Small pieces the loop uses


def _tracker_params(cfg: Config) -> dict:
    """Dotted keys with scalar values, as trackers want their hyperparameters."""
    flat = layout.flat_config(cfg.model_dump(mode="json"))
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in flat.items()}


def _mix_name(cfg: Config) -> str:
    on = [n for n, a in (("mixup", cfg.mix.mixup_alpha), ("cutmix", cfg.mix.cutmix_alpha)) if a > 0]
    return "+".join(on) or "off"


def batch_loss(step: Step, images: torch.Tensor, features: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
               mix_rng: np.random.Generator | None, row_weights: torch.Tensor | None) -> torch.Tensor:
    """The training loss of one batch of normalized images: soft targets, Mixup/CutMix (when
    `mix_rng` is given), label smoothing once, forward, the loss (weighted by `row_weights`,
    indexed by the batch's row numbers, when given)."""
    cfg, comp = step.cfg, step.comp
    target = soft_targets(y, comp.task, comp.num_outputs)
    # Row weights (data.extra's `weight`) and the metadata (data.features) ride as extra target
    # columns, so a mixed image's weight and features mix with the same partner and proportion as
    # its target.
    weights = row_weights[rows.to(row_weights.device)] if row_weights is not None else None
    riders = [features.to(target.device, target.dtype)]
    if weights is not None:
        riders.append(weights.unsqueeze(1).to(target.dtype))
    k = target.shape[1]
    target = torch.cat([target, *riders], dim=1)
    if mix_rng is not None:
        images, target, _ = mix(images, target, mix_rng, cfg.mix)
    target, features, weights = (target[:, :k], target[:, k:k + features.shape[1]],
                                 target[:, -1] if weights is not None else None)
    target = smooth(target, cfg.loss.label_smoothing, comp.task)  # once, after mixing
    with step.accelerator.autocast():
        logits = logits_of(step.model, images, features)
    if weights is None:
        return step.loss_fn(logits.float(), target)
    return weighted_loss(step.loss_fn, logits.float(), target, weights)


def train_one_epoch(step: Step, loader, update: int, mix_rng: np.random.Generator | None,
                    progress: str | None = None, row_weights: torch.Tensor | None = None
                    ) -> tuple[int, float, float | None, tuple[int, int]]:
    """One pass over the training loader. Returns (update count, mean loss, last lr, image size).

    Per batch: the uint8 images normalized on the device, the loss (`batch_loss`; mixing when
    `mix_rng` is given: mixing is on this epoch, drawing from it), backward; per optimizer update
    (after gradient accumulation): the lr of this update, clipping, the step, EMA.
    """
    cfg, accelerator, model, optimizer = step.cfg, step.accelerator, step.model, step.optimizer
    loss_sum = torch.zeros((), device=accelerator.device)
    seen = torch.zeros((), device=accelerator.device)
    sizes_seen, lr = set(), None
    # disable=None: tqdm draws only on a terminal, so a log file (nohup, a notebook running
    # `make`) gets the one-line epoch summaries, not a carriage-return line per update.
    bar = tqdm(loader, desc=progress, leave=False, dynamic_ncols=True,
               disable=True if progress is None or not accelerator.is_main_process else None)
    start = time.time()
    for i, (images, features, y, rows) in enumerate(bar):
        sizes_seen.add(tuple(images.shape[-2:]))
        images = step.normalize(images)
        with accelerator.accumulate(model):
            loss = batch_loss(step, images, features, y, rows, mix_rng, row_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients:  # this batch completes an optimizer update
                step.scheduler.step_update(update)  # every group: the schedule's lr x its lr_scale
                lr = scheduled_lr(optimizer)
                if cfg.train.clip_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                update += 1
                if step.ema is not None:
                    step.ema.update(accelerator.unwrap_model(model), step=update)
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        if not bar.disable and i % 10 == 0:  # .item() waits for the GPU: not every batch
            rate = len(y) * (i + 1) * accelerator.num_processes / max(time.time() - start, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduled_lr(optimizer):.2e}",
                            size=images.shape[-1], img_s=f"{rate:.0f}")
    if len(sizes_seen) != 1:
        raise RuntimeError(f"training batches of one epoch came in sizes {sorted(sizes_seen)}, expected one")
    train_loss = float(accelerator.reduce(loss_sum, "sum") / accelerator.reduce(seen, "sum"))
    return update, train_loss, lr, sizes_seen.pop()


# ---------------------------------------------------------------------------------------------
# The phases of a fold


def start_accelerator(cfg: Config, expected_processes: int | None, speed: Speed,
                      trackers: tuple[GeneralTracker, ...] = ()) -> Accelerator:
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # with no GPU, several processes form a gloo group only with cpu=True
        mixed_precision=speed.precision,
        gradient_accumulation_steps=cfg.train.grad_accum,
        # podium steps the lr itself, once per optimizer update (see schedule.py)
        step_scheduler_with_optimizer=False,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # TensorBoard / Weights & Biases through accelerate, off by default; a tune trial's reporter
        log_with=[*([cfg.log_with] if cfg.log_with else []), *trackers] or None,
        project_dir=str(cfg.run_dir / "logs"),
        # A frozen backbone gets no gradients; DistributedDataParallel fails on that unless told to
        # look for unused parameters (an extra pass over the autograd graph each step, so only then).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.train.freeze_epochs > 0)],
    )
    if expected_processes is not None and accelerator.num_processes != expected_processes:
        raise RuntimeError(
            f"asked for {expected_processes} processes, accelerate formed a group of "
            f"{accelerator.num_processes} ({accelerator.distributed_type})"
        )
    return accelerator


def build_step(cfg: Config, comp: Competition, accelerator: Accelerator, data: FoldData,
               speed: Speed) -> tuple[Step, FoldData]:
    """The model, optimizer, scheduler and EMA, prepared by Accelerate together with the loaders.
    Call after seeding: the seed decides the initial weights, the same on every process."""
    use_cpu = not torch.cuda.is_available()
    model, weights = build_model(cfg.model, comp.num_outputs, data.features.width if data.features else 0)
    if cfg.train.grad_checkpointing:  # the model supports it: checked before launch (stages.preflight)
        model.set_grad_checkpointing(True)
    if not use_cpu:
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, accelerator.device, channels_last=speed.channels_last)
    model = model.to(accelerator.device)
    optimizer = build_optimizer(model, cfg)  # while every parameter trains: timm groups only those
    backbone = backbone_parameters(model) if cfg.train.freeze_epochs else []
    model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
        model, optimizer, data.train_loader, data.valid_loader, data.test_loader
    )
    data = dataclasses.replace(data, train_loader=train_loader, valid_loader=valid_loader, test_loader=test_loader)
    if cfg.train.compile:
        # Once, outside the loop. torch marks the image dimensions dynamic when a second size
        # arrives, so progressive resizing adds a graph or two, not one per epoch or batch (tested).
        model = torch.compile(model)
    # EMA of the whole state (parameters and BatchNorm buffers); warmup keeps it from lagging.
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.train.ema_decay,
                     use_warmup=cfg.train.ema_warmup) if cfg.train.ema else None
    per_epoch = updates_per_epoch(len(data.train_df), cfg, accelerator.num_processes)
    scheduler = lr_scheduler(optimizer, cfg, per_epoch)
    loss_fn = train_loss_fn(comp.task, cfg.loss.focal_gamma)
    step = Step(cfg, comp, accelerator, model, optimizer, scheduler, normalize, loss_fn, ema, backbone, weights)
    return step, data


def resume_from(step: Step, folder: Path) -> FoldState:
    """The loop's state after the checkpoint's epoch; Accelerate restores the model, optimizer,
    sampler and random states in place."""
    saved, tensors = load_checkpoint(step.accelerator, folder)
    if step.ema is not None:
        step.ema.module.load_state_dict(tensors["ema"])
    top = saved.get("top", [])
    return FoldState(epoch=saved["epoch"] + 1, update=saved["update"], history=saved["history"],
                     best_score=saved["best_score"], best_epoch=saved["best_epoch"], best_weights=tensors["best"],
                     best_full=saved.get("best_full", False), top=top,
                     top_weights=[tensors[f"top{i}"] for i in range(len(top))])


def save_epoch(step: Step, state: FoldState, root: Path, inputs: dict[str, str]) -> None:
    """A checkpoint after epoch state.epoch - 1 (every process takes part)."""
    tensors = {"best": state.best_weights, **{f"top{i}": w for i, w in enumerate(state.top_weights)}}
    if step.ema is not None:
        tensors["ema"] = step.ema.module.state_dict()
    saved = {"epoch": state.epoch - 1, "update": state.update, "best_score": state.best_score,
             "best_full": state.best_full,
             "best_epoch": state.best_epoch, "top": state.top, "history": state.history, "inputs": inputs,
             "tensor_files": sorted(tensors)}
    save_checkpoint(step.accelerator, root, state.epoch - 1, saved, tensors)


def write_start(cfg: Config, fold: int, accelerator: Accelerator, inputs: dict[str, str], state: FoldState,
                resume: Path | None, speed: Speed, *, weights: dict | None = None) -> None:
    """Main process: the resolved config with provenance, and the history kept so far."""
    out = layout.fold_dir(cfg, fold)
    out.mkdir(parents=True, exist_ok=True)
    saved_cfg = cfg.model_dump(mode="json")
    saved_cfg["provenance"] = provenance(
        seed=cfg.seed, fold=fold, folds_hash=inputs.get("folds"), config_hash=inputs.get("config"),
        data_hash=inputs.get("data"), num_processes=accelerator.num_processes,
        distributed_type=str(accelerator.distributed_type), mixed_precision=accelerator.mixed_precision,
        channels_last=speed.channels_last, speed_choice=speed.why, weights=weights,
        device=str(accelerator.device), resumed_from=str(resume) if resume else None,
    )
    artifacts.write_yaml(out / layout.CONFIG_YAML, saved_cfg)
    # One row per epoch across restarts: rows written after the checkpoint are dropped here.
    artifacts.write_csv(out / layout.HISTORY_CSV, pd.DataFrame(state.history))


# ---------------------------------------------------------------------------------------------
# The loop


def train_fold(cfg: Config, fold: int, inputs: dict[str, str], expected_processes: int | None = None,
               resume: Path | None = None, speed: Speed | None = None, reporter: TrialReporter | None = None) -> None:
    """Train one fold; `speed` is what `auto` resolved to (stages.run_train measures it on a CPU;
    None: resolved here without measuring); `reporter`: a `make tune` trial's, which may stop it."""
    comp = load_competition(cfg)
    speed = speed or resolve_speed(cfg, comp.num_outputs, measure_cpu=False)
    accelerator = start_accelerator(cfg, expected_processes, speed, (reporter,) if reporter else ())
    main = accelerator.is_main_process
    if reporter is not None:
        reporter.stop = accelerator.set_trigger
    if cfg.log_with or reporter is not None:
        accelerator.init_trackers(f"{cfg.experiment}-fold{fold}", config=_tracker_params(cfg))
    # Seed before building the model: every process gets the same initial weights.
    set_seed(cfg.seed)
    data = build_loaders(cfg, comp, fold, inputs["data"])
    step, data = build_step(cfg, comp, accelerator, data, speed)
    state = resume_from(step, resume) if resume is not None else FoldState()
    row_weights = torch.from_numpy(data.row_weights).to(accelerator.device) if data.row_weights is not None else None
    if main:
        write_start(cfg, fold, accelerator, inputs, state, resume, speed,
                    weights=step.weights.as_json() if step.weights else None)
        per_epoch = updates_per_epoch(len(data.train_df), cfg, accelerator.num_processes)
        limited = sorted({e.epochs for e in cfg.data.extra if e.epochs is not None})
        extra = "extra rows (data.extra" + (f"; some in the first {'/'.join(map(str, limited))} epochs only)"
                                            if limited else ")")
        parts = [f"{n} {what}" for n, what in ((data.pseudo_rows, "pseudo-labelled test images"),
                                                (data.extra_rows, extra)) if n]
        pseudo = f" (of them {' and '.join(parts)})" if parts else ""
        say(f"fold {fold}: {len(data.train_df)} train{pseudo} / {len(data.valid_df)} valid rows, "
              f"{accelerator.num_processes} process(es) on {accelerator.device}, {per_epoch} updates per epoch"
              + (f"; resuming after epoch {state.epoch} from {resume}" if resume else ""))
        say(f"speed: {speed}", f"model: {cfg.model.name}, {step.weights or 'random initial weights'}; "
                               f"input normalized with mean {list(cfg.augment.mean)}, std {list(cfg.augment.std)}")
        if data.features is not None:
            say(f"metadata (data.features): {', '.join(c.name for c in data.features.columns)} as "
                f"{data.features.width} inputs to an MLP of width {cfg.model.features_hidden}, scaled by this "
                "fold's training rows")
        for note in (fine_tuning_note(cfg), resize_note(cfg)):
            if note:
                say(note)

    ckpt_root = layout.fold_dir(cfg, fold) / layout.CHECKPOINTS
    epochs, process = cfg.train.epochs, accelerator.process_index
    started = (time.time(), state.epoch)
    for epoch in range(state.epoch, epochs):
        start = time.time()
        # Dropout and drop-path draw from torch's global generator: seed it from (seed, epoch,
        # process), so an epoch replays the same after a resume.
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, process]).generate_state(1)[0]))
        # Set before iterating: persistent workers read epoch and size from shared memory.
        train_size = size_at(epoch, cfg)
        data.size_state.set(epoch, train_size)
        data.valid_state.set(epoch, train_size)  # validated at the size it trains at
        data.train_loader.set_epoch(epoch)
        mixing = mixing_on(cfg.mix, epoch, epochs)
        # Only the classifier trains in the first freeze_epochs: decided from the epoch alone, so a
        # resumed run is in the same state.
        frozen = epoch < cfg.train.freeze_epochs
        freeze(step.backbone, frozen=frozen)
        step.model.train()
        state.update, train_loss, lr, (height, width) = train_one_epoch(
            step, data.train_loader, state.update,
            np.random.default_rng([cfg.seed, epoch, process]) if mixing else None,
            progress=f"fold {fold} epoch {epoch + 1}/{epochs}", row_weights=row_weights,
        )
        train_seconds = time.time() - start

        # Without TTA: the epoch scores only pick the best epoch and draw the curves. The OOF
        # predictions written at the end come from the best weights, with TTA when it is on.
        probs, valid_loss, _ = predict(step.eval_model, data.valid_loader, step.normalize, accelerator, comp.task,
                                       with_loss=True)
        scores = score_all(data.valid_targets, data.unscale(probs), comp.task)
        size = height if height == width else f"{height}x{width}"
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "valid_loss": valid_loss, **scores,
               "image_size": size, "mix": _mix_name(cfg) if mixing else "off",
               "label_smoothing": smoothing_used(cfg.loss.label_smoothing, comp.task), "scheduler": cfg.scheduler.name,
               "frozen": frozen, "valid_size": train_size,
               "train_seconds": round(train_seconds, 2), "seconds": round(time.time() - start, 2)}
        state.history.append(row)
        # Every process keeps the best weights, so all can predict the test set.
        weights, full = accelerator.unwrap_model(step.eval_model).state_dict(), train_size == cfg.train.image_size
        improved = state.keep_if_best(scores[cfg.metric], epoch, cfg.metric, weights, full=full)
        state.keep_top(cfg.train.average_top_k, scores[cfg.metric], epoch, cfg.metric, weights, full=full)
        state.epoch = epoch + 1
        accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=epoch)
        if main:
            artifacts.write_csv(layout.fold_dir(cfg, fold) / layout.HISTORY_CSV, pd.DataFrame(state.history))
            say(f"fold {fold} epoch {epoch + 1}/{epochs}  lr {lr:.2e}  train_loss {train_loss:.4f}  "
                  f"valid_loss {valid_loss:.4f}  {cfg.metric} {scores[cfg.metric]:.4f}  size {size}"
                  f"{'  *' if improved else ''}  ({row['seconds']:.1f}s)")
        # A tune trial's pruner stopped the fold in the reporter's log (main process); every process
        # learns it here and stops with it.
        if reporter is not None and accelerator.check_trigger():
            break
        if state.epoch % cfg.checkpoint.every_epochs == 0 or state.epoch == epochs:
            save_epoch(step, state, ckpt_root, inputs)

    if state.epoch == epochs:
        finish(step, data, state, fold, inputs, started)
    elif main:  # pruned: no predictions, no done-record; the tune stage reads why
        artifacts.write_json(layout.fold_dir(cfg, fold) / layout.PRUNED_JSON,
                             {"epoch": state.epoch - 1, "score": state.history[-1][cfg.metric]})
        say(f"fold {fold}: stopped after epoch {state.epoch} by the tune study's pruner")
    accelerator.wait_for_everyone()
    # Destroys the process group; without it a gloo group sometimes aborts at exit.
    accelerator.end_training()
