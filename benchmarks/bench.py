"""podium's speed figures, measured side by side in one run: `make bench`.

1. loader_cache_speedup   the loader with the decode-once cache vs decoding every epoch
2. loader_over_step       the loader alone vs the training step alone, at default settings, on
                          the shared photographs and the demo (the worse of the two; each one,
                          and each loader stage's speed, under loader_over_step_by_data)
3. step_overhead          podium's training step vs a bare PyTorch + Accelerate loop
                          (same model, batch, optimizer, precision, data in memory)
4. progressive_time_ratio a fold with the default progressive schedule vs the same epochs at
                          full size (wall time from the first epoch to the written predictions)
5. gpu_step_fraction      on a GPU only: resnet50 at 224 px through podium's step, as a fraction
                          of the same model on random tensors already on the GPU
6. over_timm_pipeline     podium's training pass (its loader and step, with what `auto` chose on
                          this device) vs one built from timm's own data pipeline (create_dataset,
                          create_transform via create_loader: what timm's train.py uses) and a
                          plain float32 AdamW step: same model, size, batch and workers,
                          epochs interleaved

Uses ../shared/datasets/hymenoptera when present, the demo competition otherwise. Writes
runs/bench.json and prints each figure as a ratio next to its two absolute values.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from shared_data import hymenoptera  # noqa: E402

from podium import artifacts  # noqa: E402
from podium.config import load_config  # noqa: E402
from podium.data.cache import build_cache, cache_key  # noqa: E402
from podium.data.datasets import ImageDataset, LoaderState, Normalize  # noqa: E402
from podium.data.images import read_rgb  # noqa: E402
from podium.stages.check import preflight  # noqa: E402
from podium.train.loop import train_one_epoch  # noqa: E402
from podium.train.losses import train_loss_fn  # noqa: E402
from podium.train.models import create_model  # noqa: E402
from podium.train.optimizer import build_optimizer  # noqa: E402
from podium.train.precision import resolve  # noqa: E402
from podium.train.schedule import lr_scheduler  # noqa: E402
from podium.train.state import Step  # noqa: E402


def _dataset(cfg, comp, cache=None):
    state = LoaderState(cfg.train.image_size)
    targets = comp.encode(comp.train)
    return ImageDataset(comp.train["path"], targets, cfg.augment.train, state, cfg.seed,
                        "augment.train", augment_seed=True, cache=cache)


def loader_rate(ds, batch_size: int, workers: int, epochs: int = 3) -> float:
    """Images per second the loader delivers, after one warm-up epoch (workers persist)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up: start the workers, fill the page cache
        pass
    n, start = 0, time.perf_counter()
    for epoch in range(epochs):
        ds.size.set(epoch + 1, ds.size.size)
        for images, _, _, _ in loader:
            n += len(images)
    return n / (time.perf_counter() - start)


def _batches(ds, batch_size: int, count: int):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)
    out = []
    while len(out) < count:
        for batch in loader:
            out.append(batch)
            if len(out) == count:
                break
    return out


def _step_setup(cfg, comp):
    """An accelerator in the precision, and the model in the memory format, `auto` picks for this
    device and config (measured on a CPU, as `make train` does): accelerate allows one precision
    per process, so every figure that uses an accelerator runs in it."""
    from accelerate import Accelerator

    speed = resolve(cfg, comp.num_outputs)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=speed.precision)
    return accelerator, _model(cfg, comp, speed), speed


def _model(cfg, comp, speed):
    """The config's model, seeded, in the memory format `speed` says."""
    torch.manual_seed(0)
    model = create_model(cfg.model, comp.num_outputs)
    return model.to(memory_format=torch.channels_last) if speed.channels_last else model


def _channels_last(model) -> bool:
    return next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)


def podium_steps(cfg, comp, batches, accelerator, model):
    """podium's train_one_epoch (mixing off, smoothing on); each call runs it on one batch."""
    model = copy.deepcopy(model).to(accelerator.device)
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = lr_scheduler(optimizer, cfg, len(batches))
    loss_fn = train_loss_fn(comp.task)
    on_device = [(x.to(accelerator.device), y.to(accelerator.device), i) for x, y, i in batches]
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, accelerator.device, channels_last=_channels_last(model))
    parts = Step(cfg, comp, accelerator, model, optimizer, scheduler, normalize, loss_fn)
    model.train()

    def step(b: int) -> None:
        train_one_epoch(parts, on_device[b:b + 1], 0, None)
    return step


def bare_steps(cfg, batches, accelerator, model):
    """The same step written by hand: normalization of the uint8 batch, forward, cross-entropy,
    backward, AdamW (fused, as podium's; the same parameter groups: no decay on 1-D parameters)."""
    from timm.optim import param_groups_weight_decay

    model = copy.deepcopy(model).to(accelerator.device)
    groups = param_groups_weight_decay(model, cfg.train.weight_decay)
    try:
        optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, fused=True)
    except RuntimeError:
        optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    fmt = torch.channels_last if _channels_last(model) else torch.contiguous_format
    on_device = [(x.to(accelerator.device).contiguous(memory_format=fmt), y.to(accelerator.device))
                 for x, y, _ in batches]
    mean = torch.tensor(cfg.augment.mean, device=accelerator.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.augment.std, device=accelerator.device).view(1, 3, 1, 1) * 255
    model.train()

    def step(b: int) -> None:
        x, y = on_device[b]
        x = (x.float() - mean) / std
        with accelerator.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.loss.label_smoothing)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def step_rates(steps: dict, batches, rounds: int) -> dict[str, float]:
    """Images per second of each step function over the same batches.

    Interleaved batch by batch, alternating which goes first, and each batch's time is the
    median over `rounds`: on a shared machine the load drifts within seconds, so comparing
    whole runs made one after the other measures the neighbours more than the code.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = {name: [[] for _ in batches] for name in steps}
    for step in steps.values():
        step(0)  # warm-up
    for r in range(rounds):
        for b in range(len(batches)):
            names = list(steps) if (r + b) % 2 == 0 else list(steps)[::-1]
            for name in names:
                sync()
                start = time.perf_counter()
                steps[name](b)
                sync()
                times[name][b].append(time.perf_counter() - start)
    images = sum(len(batch[0]) for batch in batches)
    return {name: images / sum(float(np.median(t)) for t in per_batch) for name, per_batch in times.items()}


def fold_seconds(config: Path, overrides: list[str]) -> tuple[float, float]:
    """Train fold 0 through the CLI; (wall time of the fold from its first epoch to its written
    predictions, checkpoints and final OOF/test passes included; of the training passes alone).
    Process start-up and model building are left out: the same for any size schedule."""
    out = subprocess.run([sys.executable, "-m", "podium.cli", "train", "--config", str(config), "--fold", "0",
                          "--fresh", *overrides], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
    cfg = load_config(config, overrides)
    history = pd.read_csv(cfg.run_dir / "fold0" / "history.csv")
    record = artifacts.read_json(cfg.run_dir / "fold0" / "train.done.json")
    return float(record["info"]["seconds"]), float(history["train_seconds"].sum())


def gpu_figure(cfg, comp, cache_folder: Path, data_hash: str, model_name: str = "resnet50", size: int = 224,
               batch: int = 128, images: int = 2560) -> dict:
    """resnet50 at 224 px through podium's loader and step (its GPU defaults: bf16, channels_last,
    cuDNN autotuning), as a fraction of the same model trained on random tensors already on the
    GPU. The training rows are repeated up to `images`, so an epoch is many batches long, as in a
    real competition, and the time between epochs does not dominate."""
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = comp.train.iloc[np.arange(max(images, batch)) % len(comp.train)].reset_index(drop=True)
    comp = dataclasses.replace(comp, train=rows)
    gcfg = cfg.model_copy(update={
        "model": cfg.model.model_copy(update={"name": model_name}),
        "train": cfg.train.model_copy(update={"image_size": size, "batch_size": batch,
                                              "num_workers": max(2, (os.cpu_count() or 2) - 2)}),
        "mix": cfg.mix.model_copy(update={"prob": 0.0}),
    })
    accelerator, model, _ = _step_setup(gcfg, comp)
    if cuda:
        torch.backends.cudnn.benchmark = gcfg.train.cudnn_benchmark
    model = model.to(accelerator.device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, gcfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = torch.randn(batch, 3, size, size, device=accelerator.device).to(memory_format=torch.channels_last)
    y = torch.randint(0, comp.num_outputs, (batch,), device=accelerator.device)

    def synthetic(steps):
        for _ in range(steps):
            with accelerator.autocast():
                loss = F.cross_entropy(model(x).float(), y)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()

    synthetic(5)
    start = time.perf_counter()
    synthetic(20)
    upper = 20 * batch / (time.perf_counter() - start)

    unique = sorted({str(p) for p in rows["path"]})
    cache = build_cache(unique, size, cache_folder, cache_key(data_hash, size))
    ds = _dataset(gcfg, comp, cache)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, pin_memory=cuda,
                                         num_workers=gcfg.train.num_workers, persistent_workers=True)
    loader = accelerator.prepare(loader)
    normalize = Normalize(gcfg.augment.mean, gcfg.augment.std, accelerator.device, channels_last=True)
    scheduler = lr_scheduler(optimizer, gcfg, max(1, len(loader)))
    loss_fn = train_loss_fn(comp.task)
    parts = Step(gcfg, comp, accelerator, model, optimizer, scheduler, normalize, loss_fn)
    train_one_epoch(parts, loader, 0, None)  # warm-up: workers, cuDNN's choices
    sync()
    start = time.perf_counter()
    train_one_epoch(parts, loader, 0, None)
    sync()
    real = len(loader) * batch / (time.perf_counter() - start)
    return {"gpu": torch.cuda.get_device_name() if cuda else "none (smoke run)",
            "precision": accelerator.mixed_precision, "model": model_name, "image_size": size, "batch_size": batch,
            "images_per_s": real, "synthetic_images_per_s": upper,
            "gpu_step_fraction": real / upper}


def loader_stages(ds, batch_size: int, count: int = 96) -> dict[str, float]:
    """Images per second of each loader stage in one process (what one worker can do): reading
    the image (the cache, or decoding the file), the augmentation pipeline, collation."""
    rows = list(range(min(count, len(ds))))
    start = time.perf_counter()
    images = [ds.cache.get(ds.paths[i]) if ds.cache is not None else read_rgb(ds.paths[i]) for i in rows]
    read = time.perf_counter()
    tf = ds.pipeline(ds.size.size)
    samples = [(tf(image=image)["image"], ds.targets[i], i) for image, i in zip(images, rows, strict=True)]
    augment = time.perf_counter()
    for k in range(0, len(samples), batch_size):
        torch.utils.data.default_collate(samples[k:k + batch_size])
    collate = time.perf_counter()
    n = len(rows)
    return {"read": n / (read - start), "augment": n / (augment - read), "collate": n / (collate - augment)}


def loader_and_step(cfg, comp, data_hash: str, accelerator) -> dict:
    """Figure 2 for one competition: the loader at its config's settings, the step alone (in the
    accelerator's precision: accelerate allows one per process)."""
    size = cfg.train.image_size
    cache = (build_cache([str(p) for p in comp.train["path"]], size, cfg.run_dir / "cache", cache_key(data_hash, size))
             if cfg.data.cache else None)
    loader = loader_rate(_dataset(cfg, comp, cache), cfg.train.batch_size, cfg.train.num_workers)
    batches = _batches(_dataset(cfg, comp, cache), cfg.train.batch_size, 10)
    model = _model(cfg, comp, resolve(cfg, comp.num_outputs))
    step = step_rates({"podium": podium_steps(cfg, comp, batches, accelerator, model)}, batches, 3)["podium"]
    return {"loader_images_per_s": loader, "step_images_per_s": step, "loader_over_step": loader / step,
            "stages_images_per_s_one_process": loader_stages(_dataset(cfg, comp, cache), cfg.train.batch_size)}


def timm_folder(cfg, comp, folder: Path) -> Path:
    """The training images as timm's folder reader wants them: <folder>/<label>/<file> (links)."""
    for path, label in zip(comp.train["path"], comp.train[cfg.data.target], strict=True):
        link = folder / str(label) / Path(path).name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(path).resolve(), link)
    return folder


def over_timm_pipeline(cfg, comp, cache, accelerator, model, folder: Path, epochs: int = 3) -> dict:
    """Figure 6: training images per second of podium's pass (its loader with the decode-once
    cache, uint8 to the step, its step in the precision and memory format `auto` chose) and of a
    pass built from timm's data pipeline (create_dataset over an image folder, create_loader with
    its training transform: random resized crop, flip, colour jitter, float32 normalised in the
    workers) with a plain float32 AdamW step. Same model and initial weights, size, batch and
    workers; one warm-up epoch each, then `epochs` epochs each, interleaved and alternating which
    goes first, so drifting load hits both alike."""
    from timm.data import create_dataset, create_loader

    size, batch, workers = cfg.train.image_size, cfg.train.batch_size, cfg.train.num_workers
    ours = torch.utils.data.DataLoader(_dataset(cfg, comp, cache), batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)
    ours_model = copy.deepcopy(model).to(accelerator.device)
    optimizer = build_optimizer(ours_model, cfg)
    ours_model, optimizer = accelerator.prepare(ours_model, optimizer)
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, accelerator.device,
                          channels_last=_channels_last(ours_model))
    parts = Step(cfg, comp, accelerator, ours_model, optimizer, lr_scheduler(optimizer, cfg, len(ours)),
                 normalize, train_loss_fn(comp.task))

    dataset = create_dataset("", root=str(folder), search_split=False, is_training=True)
    theirs = create_loader(dataset, input_size=(3, size, size), batch_size=batch, is_training=True,
                           num_workers=workers, use_prefetcher=False, device=torch.device("cpu"),
                           mean=cfg.augment.mean, std=cfg.augment.std, persistent_workers=workers > 0)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format).float()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    def podium_epoch(epoch: int) -> int:
        ours_model.train()
        train_one_epoch(parts, ours, epoch * len(ours), None)
        return len(ours) * batch

    def timm_epoch(epoch: int) -> int:
        plain.train()
        n = 0
        for x, y in theirs:
            loss = F.cross_entropy(plain(x), y, label_smoothing=cfg.loss.label_smoothing)
            loss.backward()
            plain_opt.step()
            plain_opt.zero_grad(set_to_none=True)
            n += len(x)
        return n

    passes = {"podium": podium_epoch, "timm": timm_epoch}
    seconds, images = dict.fromkeys(passes, 0.0), dict.fromkeys(passes, 0)
    for epoch in range(1 + epochs):
        for name in (list(passes) if epoch % 2 else list(passes)[::-1]):
            start = time.perf_counter()
            n = passes[name](epoch)
            if epoch > 0:  # the first is the warm-up: workers start, page cache fills
                seconds[name] += time.perf_counter() - start
                images[name] += n
    rate = {name: images[name] / seconds[name] for name in passes}
    return {"over_timm_pipeline": rate["podium"] / rate["timm"], "podium_pass_images_per_s": rate["podium"],
            "timm_pipeline_images_per_s": rate["timm"], "timm_pipeline_epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-progressive", action="store_true", help="skip figure 4 (four training runs)")
    args = parser.parse_args()

    shared = hymenoptera()
    config = REPO / "configs" / ("hymenoptera.yaml" if shared else "default.yaml")
    cfg = load_config(config, [f"runs_dir={REPO / 'runs' / 'bench'}"])
    comp, data_hash = preflight(cfg)
    size = cfg.train.image_size
    print(f"data: {cfg.data.dir} ({len(comp.train)} train images), size {size} px, "
          f"{cfg.train.num_workers} workers, {os.cpu_count()} cores, torch {torch.__version__}", flush=True)

    # 1. decode once vs decode every epoch
    paths = [str(p) for p in comp.train["path"]]
    cache = build_cache(paths, size, cfg.run_dir / "cache", cache_key(data_hash, size))
    no_cache = loader_rate(_dataset(cfg, comp), cfg.train.batch_size, cfg.train.num_workers)
    with_cache = loader_rate(_dataset(cfg, comp, cache), cfg.train.batch_size, cfg.train.num_workers)

    # 3. podium's step vs a bare loop, the same batches, in memory
    batches = _batches(_dataset(cfg, comp, cache), cfg.train.batch_size, 10)
    accelerator, model, speed = _step_setup(cfg, comp)
    rates = step_rates({"bare": bare_steps(cfg, batches, accelerator, model),
                        "podium": podium_steps(cfg, comp, batches, accelerator, model)}, batches, 5)
    bare_rate, podium_rate = rates["bare"], rates["podium"]

    # 6. podium's whole training pass vs one from timm's data pipeline and a plain step
    vs_timm = over_timm_pipeline(cfg, comp, cache if cfg.data.cache else None, accelerator, model,
                                 timm_folder(cfg, comp, cfg.run_dir / "timm-folder"))

    # 2. the loader at default settings vs the step alone, on this data and on the demo
    by_data = {Path(cfg.data.dir).name: {
        "loader_images_per_s": with_cache if cfg.data.cache else no_cache, "step_images_per_s": podium_rate,
        "loader_over_step": (with_cache if cfg.data.cache else no_cache) / podium_rate,
        "stages_images_per_s_one_process": loader_stages(_dataset(cfg, comp, cache if cfg.data.cache else None),
                                                         cfg.train.batch_size)}}
    if shared:
        demo_cfg = load_config(REPO / "configs" / "default.yaml", [f"runs_dir={REPO / 'runs' / 'bench'}"])
        by_data["demo"] = loader_and_step(demo_cfg, *preflight(demo_cfg), accelerator)
    worst = min(by_data, key=lambda name: by_data[name]["loader_over_step"])

    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
        "data": str(cfg.data.dir), "model": cfg.model.name, "image_size": size, "batch_size": cfg.train.batch_size,
        "loader_cache_speedup": with_cache / no_cache,
        "loader_images_per_s_cached": with_cache, "loader_images_per_s_decoding": no_cache,
        # the worse of the competitions measured; each one under loader_over_step_by_data
        "loader_over_step": by_data[worst]["loader_over_step"], "loader_over_step_data": worst,
        "loader_images_per_s_default": by_data[worst]["loader_images_per_s"],
        "step_images_per_s": by_data[worst]["step_images_per_s"],
        "loader_over_step_by_data": by_data,
        "step_overhead": bare_rate / podium_rate - 1.0,
        "bare_step_images_per_s": bare_rate, "podium_step_images_per_s": podium_rate,
        "auto_precision": speed.precision, "auto_channels_last": speed.channels_last, "auto_why": speed.why,
        **vs_timm,
    }
    if not args.skip_progressive:
        # 4. progressive resizing's wall time against the same epochs at full size
        # Two runs of each, in the order P F F P so drifting load hits both alike; the faster of
        # each pair counts (a slower run measures the machine's other tenants).
        over = [f"runs_dir={REPO / 'runs' / 'bench'}", "train.epochs=10"]
        runs = {"progressive": [], "full": []}
        for name in ("progressive", "full", "full", "progressive"):
            runs[name].append(fold_seconds(config, over + ([] if name == "progressive" else ["resize.enabled=false"])))
        (progressive, progressive_train), (full, full_train) = min(runs["progressive"]), min(runs["full"])
        figures.update(progressive_time_ratio=progressive / full, progressive_seconds=progressive,
                       full_size_seconds=full,
                       # the training passes alone, without validation and per-epoch fixed costs
                       progressive_train_ratio=progressive_train / full_train,
                       progressive_train_seconds=progressive_train, full_size_train_seconds=full_train)
    gpu = gpu_figure(cfg, comp, cfg.run_dir / "cache-gpu", data_hash) if torch.cuda.is_available() else None
    figures["gpu"] = gpu

    rows = [
        ("1. loader, cache / decoding", "loader_cache_speedup", "loader_images_per_s_cached",
         "loader_images_per_s_decoding", "img/s", ">= 3"),
        ("2. loader / training step (worst)", "loader_over_step", "loader_images_per_s_default",
         "step_images_per_s", "img/s", ">= 2"),
        ("3. bare loop / podium step - 1", "step_overhead", "bare_step_images_per_s", "podium_step_images_per_s",
         "img/s", "<= 0.03"),
        ("4. progressive / full size", "progressive_time_ratio", "progressive_seconds", "full_size_seconds",
         "s", "<= 0.6"),
        ("   (training passes only)", "progressive_train_ratio", "progressive_train_seconds",
         "full_size_train_seconds", "s", ""),
        ("6. podium pass / timm pipeline", "over_timm_pipeline", "podium_pass_images_per_s",
         "timm_pipeline_images_per_s", "img/s", ">= 1.25"),
    ]
    for label, key, a, b, unit, target in rows:
        if key in figures:
            print(f"{label:34s} {figures[key]:7.3f}   ({figures[a]:.1f} vs {figures[b]:.1f} {unit})"
                  + (f"  target {target}" if target else ""))
    for name, row in by_data.items():
        stages = row["stages_images_per_s_one_process"]
        slowest = min(stages, key=stages.get)
        print(f"   {name}: loader {row['loader_images_per_s']:.0f} vs step {row['step_images_per_s']:.1f} img/s "
              f"= {row['loader_over_step']:.1f}; per process: "
              + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()) + f" img/s (slowest: {slowest})")
        if row["loader_over_step"] < 2:
            print(f"   {name}: the loader cannot keep ahead; its slowest stage is {slowest}: "
                  + {"read": "turn on data.cache or add workers",
                     "augment": "add workers (train.num_workers) or lighten augment.train",
                     "collate": "add workers (train.num_workers)"}[slowest])
    print(f"   auto chose {speed}")
    if gpu is None:
        print("5. GPU figures: no GPU on this machine")
    else:
        print(f"5. resnet50 224 px / synthetic    {gpu['gpu_step_fraction']:7.3f}   "
              f"({gpu['images_per_s']:.0f} vs {gpu['synthetic_images_per_s']:.0f} img/s)  {gpu['gpu']}, "
              f"{gpu['precision']}")
    artifacts.write_json(REPO / "runs" / "bench.json", figures)
    print(f"wrote {REPO / 'runs' / 'bench.json'}")


if __name__ == "__main__":
    main()
