"""What `train.precision: auto` and `train.channels_last: auto` become on the device a fold trains on.

On a GPU the answer is known: bf16 autocast (fp16 where bf16 is missing) and channels_last. On a
CPU it depends on the CPU and on the work (the same model can be fastest in bf16 with
channels_last at 128 px and in float32 at 32 px; docs/speed.md has the measured rates). So on a
CPU, `auto` times a few training steps of the fold's model at its full image size in each setting
the CPU can run (bf16 only where the CPU computes it natively) and keeps the fastest, if it beats
float32 in the default layout by 10% (a tie keeps float32, the exact arithmetic). The answer is
kept in runs/.cache/speed.json, keyed by the machine, torch, timm, model, size and batch: every fold
of an experiment (and a resumed one) makes the same choice, and measures nothing after the first.

A timing taken while other processes kept the CPU busy ranks the settings by who got the cores,
not by speed, so it is used for that fold but never kept; and a kept answer older than the
installed packages (a new torch build, a reinstalled environment) is timed again.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

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
# Other processes using more than this share of the cores this process can use while the settings
# were timed: the timing is not kept (two torch jobs on one CPU slow each other several-fold).
BUSY_SHARE = 0.25


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


def timm_version() -> str:
    import timm  # the model's implementation: a new timm can change its speed

    return timm.__version__


def _key(cfg: Config, num_outputs: int, batch: int) -> str:
    return (f"{platform.machine()} {platform.processor() or '?'} {torch.backends.cpu.get_cpu_capability()} "
            f"threads={torch.get_num_threads()} torch={torch.__version__} timm={timm_version()} | {cfg.model.name} "
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


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (Linux's /proc/stat, idle and
    iowait left out); None where there is no /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(v) for v in fields[1:])
    steal = rest[0] if rest else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed_alone(timing):
    """(timing(), how busy other processes kept the CPU meanwhile, as a share of the cores this
    process can use: 0.0 alone; None where it cannot be told)."""
    busy0, own0, wall0 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    result = timing()
    busy1, own1, wall = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter() - wall0
    if busy0 is None or busy1 is None:
        return result, None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    return result, others / (max(wall, 1e-9) * cores)


def environment_time() -> float:
    """When the installed packages last changed: the site-packages folder's modification time
    (pip adds or removes a folder there for every package it installs or removes)."""
    return Path(sysconfig.get_paths()["purelib"]).stat().st_mtime


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
    # The candidates are part of the key: a config that fixes one half (channels_last: off) must
    # not be handed a choice made among settings it rules out.
    key = f"{_key(cfg, num_outputs, batch)} | candidates={','.join(setting_name(*s) for s in settings)}"
    path = layout.speed_cache(cfg)
    known = artifacts.read_json(path) if path.is_file() else {}
    found = known.get(key)
    stale = found is not None and found.get("measured_at", 0.0) < environment_time()
    if found is not None and not stale:
        when = datetime.fromtimestamp(found["measured_at"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return Speed(found["precision"], found["channels_last"],
                     f"from {path}, measured on this CPU {when}: {found['rates']}")
    rates, busy = timed_alone(lambda: measure(cfg, num_outputs, settings, batch))
    precision, channels_last = choose(rates)
    again = " again (the installed packages changed since the kept timing)" if stale else ""
    if busy is not None and busy > BUSY_SHARE:
        return Speed(precision, channels_last,
                     f"measured on this CPU{again} while other processes used {busy:.0%} of it: {_describe(rates)}; "
                     "not kept, the next fold times again")
    chosen = Speed(precision, channels_last, f"measured on this CPU{again}: {_describe(rates)}; kept in {path}")
    known = artifacts.read_json(path) if path.is_file() else {}  # another fold may have written meanwhile
    entry = {"precision": precision, "channels_last": channels_last, "rates": _describe(rates),
             "measured_at": time.time()}
    artifacts.write_json(path, {**known, key: entry})
    return chosen
