"""Training one fold: a plain Accelerate loop, top to bottom.

Run under `accelerate launch` (the `podium train` command builds that command line). Every
process runs this function; only the main process writes files.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from safetensors.torch import save as safetensors_bytes
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import artifacts
from .checkpoint import load_checkpoint, save_checkpoint
from .competition import Competition, load_competition
from .config import Config
from .data import ImageDataset, LoaderState, Normalize, encode_targets
from .losses import smooth, soft_targets, train_loss_fn
from .metrics import is_better, score_all
from .mix import mix, mixing_on
from .models import create_model
from .plots import plot_history
from .provenance import provenance
from .schedule import lr_scheduler, size_at, updates_per_epoch


# ---------------------------------------------------------------------------------------------
# Small pieces the loop uses


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    logits = logits.float()
    if task == "multiclass":
        return logits.softmax(dim=1)
    p = logits.sigmoid()
    return p.squeeze(1) if task == "binary" else p


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Validation loss against the true labels, one value per row (so it can be gathered)."""
    logits = logits.float()
    if task == "multiclass":
        return F.cross_entropy(logits, y, reduction="none")
    target = y.float().view(logits.shape)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)


def forward_probs(model, images: torch.Tensor, task: str, tta_hflip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, probabilities) of a normalized batch; with TTA the probabilities are averaged
    with those of the mirrored batch (the logits stay the plain ones, for the loss)."""
    logits = model(images)
    p = probabilities(logits, task)
    if tta_hflip:
        p = (p + probabilities(model(images.flip(3)), task)) / 2
    return logits, p


@torch.no_grad()
def predict(model, loader, normalize: Normalize, accelerator: Accelerator, task: str, tta_hflip: bool,
            with_loss: bool):
    """Probabilities for every row of `loader`'s dataset, in the dataset's row order.

    Each batch carries its row indices; gather_for_metrics drops the rows a distributed
    sampler repeats to even out the last batch, and the check below proves every row came back
    exactly once before anything is written by id.
    """
    model.eval()
    probs, rows, losses = [], [], []
    for images, y, idx in loader:
        with accelerator.autocast():
            logits, p = forward_probs(model, normalize(images), task, tta_hflip)
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


def prediction_frame(ids, probs: np.ndarray, columns: list[str], id_column: str) -> pd.DataFrame:
    probs = probs.reshape(len(ids), -1)
    return pd.DataFrame({id_column: list(ids), **{c: probs[:, j] for j, c in enumerate(columns)}})


def open_cache(cfg: Config, data_hash: str):
    """The decoded-image cache that `podium train` built before launching."""
    from .cache import ImageCache, cache_key

    found = ImageCache.open(cfg.run_dir / "cache", cache_key(data_hash, cfg.train.image_size))
    if found is None:
        raise RuntimeError(f"data.cache is on but {cfg.run_dir / 'cache'} holds no cache for this data")
    return found


def _flat(tree: dict, prefix: str = "") -> dict:
    """Dotted keys with scalar values, as trackers want their hyperparameters."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def _mix_name(cfg: Config) -> str:
    on = [n for n, a in (("mixup", cfg.mix.mixup_alpha), ("cutmix", cfg.mix.cutmix_alpha)) if a > 0]
    return "+".join(on) or "off"


def resolve_precision(cfg: Config) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    if not torch.cuda.is_available():
        return "no"  # CPU autocast is slow for convolutions here; float32 it is
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) over the model's parameters, already on their device.

    AdamW runs its fused kernel where torch has one for the device: one kernel for all
    parameters instead of a loop over tensors (on a CPU, a resnet18 update takes about a fifth
    of the time). It matters most for small images, where the update is a large share of a step.
    """
    params, lr, wd = list(model.parameters()), cfg.train.lr, cfg.train.weight_decay
    if cfg.train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.train.momentum, weight_decay=wd, nesterov=True)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True)
    except RuntimeError:  # no fused kernel for this device in this torch
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def train_one_epoch(model, loader, normalize: Normalize, optimizer, scheduler, accelerator: Accelerator, ema,
                    loss_fn, cfg: Config, comp: Competition, update: int, mixing: bool,
                    mix_rng: np.random.Generator, progress: str | None = None):
    """One pass over the training loader. Returns (update count, mean loss, last lr, image size).

    Per batch: the uint8 images normalized on the device, soft targets, Mixup/CutMix (when
    `mixing`), label smoothing once, forward, backward; per optimizer update (after gradient
    accumulation): the lr of this update, clipping, the step, EMA. Mixing draws come from
    `mix_rng`, seeded by (seed, epoch, process).
    """
    loss_sum = torch.zeros((), device=accelerator.device)
    seen = torch.zeros((), device=accelerator.device)
    sizes_seen, lr = set(), None
    # disable=None: tqdm draws only on a terminal, so a log file (nohup, a notebook running
    # `make`) gets the one-line epoch summaries, not a carriage-return line per update.
    bar = tqdm(loader, desc=progress, leave=False, dynamic_ncols=True,
               disable=True if progress is None or not accelerator.is_main_process else None)
    start = time.time()
    for step, (images, y, _) in enumerate(bar):
        sizes_seen.add(tuple(images.shape[-2:]))
        images = normalize(images)
        with accelerator.accumulate(model):
            target = soft_targets(y, comp.task, comp.num_outputs)
            if mixing:
                images, target, _ = mix(images, target, mix_rng, cfg.mix)
            target = smooth(target, cfg.loss.label_smoothing, comp.task)  # once, after mixing
            with accelerator.autocast():
                logits = model(images)
            loss = loss_fn(logits.float(), target)
            accelerator.backward(loss)
            if accelerator.sync_gradients:  # this batch completes an optimizer update
                scheduler.step_update(update)
                lr = optimizer.param_groups[0]["lr"]
                if cfg.train.clip_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                update += 1
                if ema is not None:
                    ema.update(accelerator.unwrap_model(model), step=update)
        loss_sum += loss.detach() * len(y)
        seen += len(y)
        if not bar.disable and step % 10 == 0:  # .item() waits for the GPU: not every batch
            rate = len(y) * (step + 1) * accelerator.num_processes / max(time.time() - start, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                            size=images.shape[-1], img_s=f"{rate:.0f}")
    if len(sizes_seen) != 1:
        raise RuntimeError(f"training batches of one epoch came in sizes {sorted(sizes_seen)}, expected one")
    train_loss = float(accelerator.reduce(loss_sum, "sum") / accelerator.reduce(seen, "sum"))
    return update, train_loss, lr, sizes_seen.pop()


# ---------------------------------------------------------------------------------------------
# The loop


def train_fold(cfg: Config, fold: int, stage_inputs: dict[str, str], expected_processes: int | None = None,
               resume: Path | None = None) -> None:
    use_cpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=use_cpu,  # with no GPU, several processes form a gloo group only with cpu=True
        mixed_precision=resolve_precision(cfg),
        gradient_accumulation_steps=cfg.train.grad_accum,
        # podium steps the lr itself, once per optimizer update (see schedule.py)
        step_scheduler_with_optimizer=False,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        log_with=cfg.log_with,  # TensorBoard / Weights & Biases through accelerate, off by default
        project_dir=str(cfg.run_dir / "logs"),
    )
    if expected_processes is not None and accelerator.num_processes != expected_processes:
        raise RuntimeError(
            f"asked for {expected_processes} processes, accelerate formed a group of "
            f"{accelerator.num_processes} ({accelerator.distributed_type})"
        )
    main = accelerator.is_main_process
    fold_dir = cfg.run_dir / f"fold{fold}"
    if cfg.log_with:
        accelerator.init_trackers(f"{cfg.experiment}-fold{fold}", config=_flat(cfg.model_dump(mode="json")))
    # Seed before building the model: every process gets the same initial weights.
    set_seed(cfg.seed)

    comp = load_competition(cfg)
    folds = pd.read_csv(cfg.run_dir / "folds.csv", dtype={cfg.data.id_column: str})
    fold_of = comp.train[cfg.data.id_column].map(dict(zip(folds[cfg.data.id_column], folds["fold"])))
    train_df = comp.train[fold_of != fold].reset_index(drop=True)
    valid_df = comp.train[fold_of == fold].reset_index(drop=True)
    targets = lambda df: encode_targets(df, comp.classes, comp.task, cfg.data.target_columns)  # noqa: E731

    size = cfg.train.image_size
    state = LoaderState(size)
    aug, seed = cfg.augment, cfg.seed
    # Training images take the epoch's size from `state`; validation, OOF and test always the final one.
    cache = open_cache(cfg, stage_inputs["data"]) if cfg.data.cache else None
    train_ds = ImageDataset(train_df["path"], targets(train_df), aug.train, state, seed, "augment.train", True,
                            cache)
    valid_ds = ImageDataset(valid_df["path"], targets(valid_df), aug.valid, size, seed, "augment.valid", False,
                            cache)
    test_ds = ImageDataset(comp.test["path"], None, aug.valid, size, seed, "augment.valid", False, cache)
    workers = cfg.train.num_workers
    # Each loader draws its workers' base seed from a generator of its own, not from torch's
    # global one: with persistent workers that draw happens only in the first epoch run, which
    # would make a resumed run's dropout differ from an uninterrupted one.
    loader_kw = dict(num_workers=workers, pin_memory=not use_cpu, persistent_workers=workers > 0)
    # drop_last: every training batch is full, so batch statistics and mixing never see a
    # batch of one, and every process does the same number of updates.
    train_loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
    pred_bs = cfg.predict.batch_size or 2 * cfg.train.batch_size
    valid_loader = DataLoader(valid_ds, batch_size=pred_bs, shuffle=False,
                              generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
    test_loader = DataLoader(test_ds, batch_size=pred_bs, shuffle=False, num_workers=workers, pin_memory=not use_cpu,
                             generator=torch.Generator().manual_seed(cfg.seed))

    model = create_model(cfg.model, comp.num_outputs)
    if not use_cpu:
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    channels_last = cfg.train.channels_last == "on" or (cfg.train.channels_last == "auto" and not use_cpu)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    normalize = Normalize(aug.mean, aug.std, accelerator.device, channels_last)
    optimizer = build_optimizer(model.to(accelerator.device), cfg)
    model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, test_loader
    )
    if cfg.train.compile:
        # Once, outside the loop. torch marks the image dimensions dynamic when a second size
        # arrives, so progressive resizing adds a graph or two, not one per epoch or batch (tested).
        model = torch.compile(model)
    # EMA of the whole state (parameters and BatchNorm buffers); warmup keeps it from lagging.
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.train.ema_decay,
                     use_warmup=cfg.train.ema_warmup) if cfg.train.ema else None
    eval_model = ema.module if ema is not None else model
    loss_fn = train_loss_fn(comp.task)
    per_epoch = updates_per_epoch(len(train_ds), cfg, accelerator.num_processes)
    scheduler = lr_scheduler(optimizer, cfg, per_epoch)
    eps = cfg.loss.label_smoothing
    columns = comp.prob_columns
    id_col = cfg.data.id_column
    ckpt_root = fold_dir / "checkpoint"

    history: list[dict] = []
    best_score, best_epoch, best_state = None, -1, None
    update, first_epoch = 0, 0
    if resume is not None:
        # Everything the loop carries from one epoch to the next comes back from the checkpoint;
        # the lr and every random draw are functions of (seed, epoch, update), so nothing else is needed.
        saved, tensors = load_checkpoint(accelerator, resume)
        first_epoch, update, history = saved["epoch"] + 1, saved["update"], saved["history"]
        best_score, best_epoch = saved["best_score"], saved["best_epoch"]
        best_state = tensors["best"]
        if ema is not None:
            ema.module.load_state_dict(tensors["ema"])

    if main:
        fold_dir.mkdir(parents=True, exist_ok=True)
        saved_cfg = cfg.model_dump(mode="json")
        saved_cfg["provenance"] = provenance(
            seed=cfg.seed, fold=fold, folds_hash=stage_inputs.get("folds"), config_hash=stage_inputs.get("config"),
            data_hash=stage_inputs.get("data"), num_processes=accelerator.num_processes,
            distributed_type=str(accelerator.distributed_type), mixed_precision=accelerator.mixed_precision,
            device=str(accelerator.device), resumed_from=str(resume) if resume else None,
        )
        artifacts.write_yaml(fold_dir / "config.yaml", saved_cfg)
        # One row per epoch across restarts: rows written after the checkpoint are dropped here.
        artifacts.write_csv(fold_dir / "history.csv", pd.DataFrame(history))
        print(f"fold {fold}: {len(train_ds)} train / {len(valid_ds)} valid rows, {accelerator.num_processes} "
              f"process(es) on {accelerator.device}, {per_epoch} updates per epoch"
              + (f"; resuming after epoch {first_epoch} from {resume}" if resume else ""), flush=True)

    fold_start = time.time()
    for epoch in range(first_epoch, cfg.train.epochs):
        start = time.time()
        # Dropout and drop-path draw from torch's global generator: seed it from (seed, epoch,
        # process), so an epoch replays the same after a resume.
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, accelerator.process_index]).generate_state(1)[0]))
        # Set before iterating: persistent workers read epoch and size from shared memory.
        state.set(epoch, size_at(epoch, cfg))
        train_loader.set_epoch(epoch)
        mixing = mixing_on(cfg.mix, epoch, cfg.train.epochs)
        model.train()
        train_start = time.time()
        update, train_loss, lr, (height, width) = train_one_epoch(
            model, train_loader, normalize, optimizer, scheduler, accelerator, ema, loss_fn, cfg, comp,
            update, mixing, np.random.default_rng([cfg.seed, epoch, accelerator.process_index]),
            progress=f"fold {fold} epoch {epoch + 1}/{cfg.train.epochs}",
        )
        train_seconds = time.time() - train_start

        # Without TTA: the epoch scores only pick the best epoch and draw the curves. The OOF
        # predictions written at the end come from the best weights, with TTA when it is on.
        probs, valid_loss = predict(eval_model, valid_loader, normalize, accelerator, comp.task, False, True)
        scores = score_all(valid_ds.targets, probs, comp.task)
        tricks = {"image_size": height if height == width else f"{height}x{width}",
                  "mix": _mix_name(cfg) if mixing else "off", "label_smoothing": eps, "scheduler": cfg.scheduler.name}
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "valid_loss": valid_loss, **scores,
               **tricks, "train_seconds": round(train_seconds, 2), "seconds": round(time.time() - start, 2)}
        history.append(row)
        # The first epoch always counts as best, so a metric that is NaN throughout still leaves weights.
        improved = best_state is None or is_better(cfg.metric, scores[cfg.metric], best_score)
        if improved:  # every process keeps the best weights, so all can predict the test set
            best_score, best_epoch = scores[cfg.metric], epoch
            best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in accelerator.unwrap_model(eval_model).state_dict().items()}
        accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=epoch)
        if main:
            artifacts.write_csv(fold_dir / "history.csv", pd.DataFrame(history))
            print(f"fold {fold} epoch {epoch + 1}/{cfg.train.epochs}  lr {lr:.2e}  train_loss {train_loss:.4f}  "
                  f"valid_loss {valid_loss:.4f}  {cfg.metric} {scores[cfg.metric]:.4f}  size {tricks['image_size']}"
                  f"{'  *' if improved else ''}  ({row['seconds']:.1f}s)", flush=True)
        if (epoch + 1) % cfg.checkpoint.every_epochs == 0 or epoch == cfg.train.epochs - 1:
            tensors = {"best": best_state}
            if ema is not None:
                tensors["ema"] = ema.module.state_dict()
            state_json = {"epoch": epoch, "update": update, "best_score": best_score, "best_epoch": best_epoch,
                          "history": history, "inputs": stage_inputs, "tensor_files": sorted(tensors)}
            save_checkpoint(accelerator, ckpt_root, epoch, state_json, tensors)

    # The held-out fold and the test set are predicted with the best epoch's weights, the same way.
    accelerator.unwrap_model(eval_model).load_state_dict(best_state)
    oof_probs, _ = predict(eval_model, valid_loader, normalize, accelerator, comp.task, cfg.predict.tta_hflip, False)
    test_probs, _ = predict(eval_model, test_loader, normalize, accelerator, comp.task, cfg.predict.tta_hflip, False)
    if main:
        weights = safetensors_bytes({k: v.contiguous() for k, v in best_state.items()})
        artifacts.write_bytes(fold_dir / "model.safetensors", weights)
        artifacts.write_csv(fold_dir / "oof.csv", prediction_frame(valid_df[id_col], oof_probs, columns, id_col))
        artifacts.write_csv(fold_dir / "test.csv", prediction_frame(comp.test[id_col], test_probs, columns, id_col))
        # Wall time of this run from its first epoch to the written predictions (checkpoints and
        # the final OOF/test passes included; start-up and a resumed run's earlier epochs not).
        seconds = round(time.time() - fold_start, 2)
        artifacts.mark_done(fold_dir, "train", stage_inputs,
                            [fold_dir / n for n in ("history.csv", "model.safetensors", "oof.csv", "test.csv")],
                            info={"seconds": seconds, "epochs_run": cfg.train.epochs - first_epoch})
        plot_history(pd.DataFrame(history), cfg.metric, fold_dir / "history.png")
        if not cfg.checkpoint.keep:  # the fold is done; its optimizer state is dead weight on disk
            shutil.rmtree(ckpt_root, ignore_errors=True)
        print(f"fold {fold}: best {cfg.metric} {best_score:.4f} at epoch {best_epoch + 1}; wrote {fold_dir}/ "
              f"({seconds:.0f} s)", flush=True)
    accelerator.wait_for_everyone()
    # Destroys the process group; without it a gloo group sometimes aborts at exit.
    accelerator.end_training()
