"""The `accelerate launch` command line for one fold: CPU, one GPU, many GPUs or many nodes.

On a machine without GPUs, `accelerate launch --cpu --num_processes N` starts a single process
(its multi-CPU mode wants mpirun), and `--multi_gpu` alone starts N processes that each think
they are alone. `--multi_gpu` together with ACCELERATE_USE_CPU=true (and Accelerator(cpu=True))
forms a real group of N CPU processes over gloo; the worker asserts the group size it got.
"""

from __future__ import annotations

import os
import sys

BASE_PORT = 29500


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def launch_command(
    worker_args: list[str],
    nproc: int | None,
    fold: int,
    accelerate_config: str | None = None,
    port: int | None = None,
    gpus: int | None = None,
    *,
    pin_gpu: bool = False,
    gpu_slot: int | None = None,
) -> tuple[list[str], dict[str, str], int | None]:
    """(argv, extra environment, expected process count or None when a config file decides).

    `pin_gpu`: folds trained side by side (make -j N cv) get one GPU each, fold k GPU k mod #GPUs
    (`gpu_slot` instead of the fold: make -j N tune's worker number).
    """
    argv = [sys.executable, "-m", "accelerate.commands.launch"]
    env: dict[str, str] = {}
    expected: int | None
    if accelerate_config:
        # A user's accelerate config (e.g. several nodes) decides the topology.
        argv += ["--config_file", accelerate_config]
        expected = None
    else:
        gpus = gpu_count() if gpus is None else gpus
        if gpus > 0 and not nproc and pin_gpu:
            env["CUDA_VISIBLE_DEVICES"] = str((fold if gpu_slot is None else gpu_slot) % gpus)
            gpus, nproc = 1, 1
        n = nproc or max(gpus, 1)
        expected = n
        if gpus == 0:
            env["ACCELERATE_USE_CPU"] = "true"
            argv += ["--multi_gpu"] if n > 1 else ["--cpu"]
        elif n > 1:
            argv += ["--multi_gpu"]
        threads = max(1, (os.cpu_count() or 1) // n)  # the cores, shared among the processes
        argv += ["--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
                 "--num_cpu_threads_per_process", str(threads),
                 "--dynamo_backend", "no"]
        # Each fold its own rendezvous port, so folds can train side by side (make -j cv).
        argv += ["--main_process_port", str(port or BASE_PORT + fold)]
    argv += ["-m", "podium.cli", *worker_args]
    return argv, env, expected


def run_launch(argv: list[str], env: dict[str, str]) -> int:
    import subprocess

    return subprocess.run(argv, env={**os.environ, **env}).returncode
