"""What `train.precision: auto` and `train.channels_last: auto` become on the device a fold trains on.

On a GPU the answer is known: bf16 autocast (fp16 where bf16 is missing) and channels_last. On a
CPU it depends on the CPU and on the work (the same model can be fastest in bf16 with
channels_last at 128 px and in float32 at 32 px; docs/speed.md has the measured rates). So on a
CPU, `auto` times a few training steps of the fold's model at its full image size in each setting
the CPU can run (bf16 only where the CPU computes it natively) and keeps the fastest, if it beats
float32 in the default layout by 10% (a tie keeps float32, the exact arithmetic). The answer is
kept in runs/.cache/speed.json, keyed by the machine, torch, model, size and batch: every fold of
an experiment (and a resumed one) makes the same choice, and measures nothing after the first.
"""

from __future__ import annotations

import dataclasses
import platform
import time

import numpy as np
import torch

from podium import artifacts
from podium.config import Config
from podium.runs import layout

# Enough steps to rank the settings (the differences worth choosing are tens of percent), few
# enough to cost seconds: the median of the timed rounds, interleaved so drifting load hits all.
WARMUP, ROUNDS, MAX_BATCH = 1, 3, 16
# float32 in the default layout is the exact reference arithmetic: another setting replaces it
# only when clearly faster, not on a tie decided by noise (at 32 px the four are within 10%).
MARGIN = 1.10


@dataclasses.dataclass(frozen=True)
class Speed:
    precision: str  # accelerate's mixed_precision: "no", "bf16", "fp16"
    channels_last: bool
    why: str = ""

    def as_json(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{setting_name(self.precision, self.channels_last)} ({self.why})"


def setting_name(precision: str, channels_last: bool) -> str:
    return f"{'float32' if precision == 'no' else precision}{' + channels_last' if channels_last else ''}"


def _fixed(cfg: Config, cuda: bool) -> tuple[list[str], list[bool]]:
    """The candidate precisions and memory formats: one each where the config fixes it or on a GPU."""
    t = cfg.train
    if t.precision != "auto":
        precisions = [t.precision]
    elif cuda:
        precisions = ["bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    else:
        # bf16 on a CPU without native bf16 arithmetic is emulated and slower: not a candidate
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        precisions = ["no", "bf16"] if native else ["no"]
    formats = [t.channels_last == "on"] if t.channels_last != "auto" else ([True] if cuda else [False, True])
    return precisions, formats


def _key(cfg: Config, num_outputs: int, batch: int) -> str:
    return (f"{platform.machine()} {platform.processor() or '?'} {torch.backends.cpu.get_cpu_capability()} "
            f"threads={torch.get_num_threads()} torch={torch.__version__} | {cfg.model.name} "
            f"outputs={num_outputs} size={cfg.train.image_size} batch={batch} "
            f"checkpointing={cfg.train.grad_checkpointing}")


def measure(cfg: Config, num_outputs: int, settings: list[tuple[str, bool]], batch: int) -> dict:
    """Training images per second of the fold's model at full size in each (precision,
    channels_last) setting: forward, cross-entropy and backward on random images. One model,
    moved between memory formats outside the timed part (the optimizer step is float32 work
    whatever the setting, so it changes no ranking and is left out)."""
    import timm

    torch.manual_seed(0)
    size = cfg.train.image_size
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, num_outputs, (batch,))
    model = timm.create_model(cfg.model.name, num_classes=num_outputs).train()
    if cfg.train.grad_checkpointing:
        model.set_grad_checkpointing(True)

    def step(precision: str, channels_last: bool) -> float:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        images = x.contiguous(memory_format=fmt)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(images).float(), y)
        loss.backward()
        seconds = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        return seconds

    times = {k: [] for k in settings}
    for r in range(WARMUP + ROUNDS):
        for k in (settings if r % 2 == 0 else settings[::-1]):
            seconds = step(*k)
            if r >= WARMUP:
                times[k].append(seconds)
    return {k: batch / float(np.median(v)) for k, v in times.items()}


def _describe(rates: dict) -> str:
    return ", ".join(f"{setting_name(*setting)} {rate:.0f}"
                     for setting, rate in sorted(rates.items(), key=lambda kv: -kv[1])) + " img/s"


def choose(rates: dict) -> tuple[str, bool]:
    """The fastest (precision, channels_last), unless float32 in the default layout (when it was
    timed) is within MARGIN of it."""
    best = max(rates, key=rates.get)
    plain = ("no", False)
    return plain if plain in rates and rates[best] < MARGIN * rates[plain] else best


def resolve(cfg: Config, num_outputs: int, *, measure_cpu: bool = True) -> Speed:
    """The precision and memory format a fold trains with (see the module's docstring)."""
    cuda = torch.cuda.is_available()
    precisions, formats = _fixed(cfg, cuda)
    settings = [(p, f) for p in precisions for f in formats]
    if len(settings) == 1:
        (precision, channels_last), = settings
        fixed = cfg.train.precision != "auto" and cfg.train.channels_last != "auto"
        return Speed(precision, channels_last, "as configured" if fixed or not cuda else "the GPU's fast settings")
    if not measure_cpu:  # nothing timed: float32 in the default layout where the config allows it
        return Speed(*(("no", False) if ("no", False) in settings else settings[0]), "not measured")
    batch = min(cfg.train.batch_size, MAX_BATCH)
    key = _key(cfg, num_outputs, batch)
    path = layout.speed_cache(cfg)
    known = artifacts.read_json(path) if path.is_file() else {}
    if key in known:
        found = known[key]
        return Speed(found["precision"], found["channels_last"], f"{found['why']}; kept in {path}")
    rates = measure(cfg, num_outputs, settings, batch)
    precision, channels_last = choose(rates)
    chosen = Speed(precision, channels_last, f"measured on this CPU: {_describe(rates)}")
    known = artifacts.read_json(path) if path.is_file() else {}  # another fold may have written meanwhile
    artifacts.write_json(path, {**known, key: chosen.as_json()})
    return chosen
