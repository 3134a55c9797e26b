"""`make train FOLD=k`: check everything in this process, then train the fold under
`accelerate launch` (train/loop.py), skipping a fold that is already current.

The worker's inputs (the resolved config, the stage inputs, the resume point, the process
count, the chosen precision) go to fold<k>/worker.json, named on its command line, so it can be
rerun by hand (`podium train-worker runs/<exp>/fold<k>/worker.json`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from podium import artifacts
from podium.config import Config, config_from_dict
from podium.console import say
from podium.errors import PodiumError
from podium.runs import layout
from podium.stages.check import preflight
from podium.stages.current import teacher_digest
from podium.stages.folds import run_folds
from podium.train.checkpoint import FoldLock, find_resumable
from podium.train.launch import launch_command, run_launch
from podium.train.precision import Speed, resolve


def run_train(cfg: Config, fold: int, *, nproc: int | None = None, fresh: bool = False,
              accelerate_config: str | None = None, port: int | None = None, pin_gpu: bool = False,
              gpu_slot: int | None = None, report: dict | None = None) -> int:
    """Check everything, then train one fold under `accelerate launch`; returns its exit code.
    `gpu_slot`: with pin_gpu, the GPU is slot mod #GPUs (default: the fold); `report`: a tune
    trial's study, to which the worker reports each epoch's score (train/trial_report.py)."""
    if not 0 <= fold < cfg.folds.n_splits:
        raise PodiumError(f"FOLD={fold}: folds are numbered 0 to {cfg.folds.n_splits - 1} (folds.n_splits)")
    out = layout.fold_dir(cfg, fold)
    job_file = out / layout.WORKER_JSON
    argv, env, expected = launch_command(["train-worker", str(job_file)], nproc, fold, accelerate_config, port,
                                         pin_gpu=pin_gpu, gpu_slot=gpu_slot)
    comp, data_hash = preflight(cfg, processes=expected or 1)
    teachers = teacher_digest(cfg, comp)
    run_folds(cfg, comp)
    if not fresh and layout.stale_reason(cfg, fold, data_hash, teachers) is None:
        say(f"{out} is up to date (FRESH=1 trains it again)")
        return 0
    inputs = layout.train_inputs(cfg, fold, data_hash, teachers)
    with FoldLock(out):
        ckpt_root = out / layout.CHECKPOINTS
        if fresh:
            shutil.rmtree(ckpt_root, ignore_errors=True)
        resume, notes = find_resumable(ckpt_root, inputs)
        for note in notes:
            say(note)
        layout.clear_fold(cfg, fold)
        speed = resolve(cfg, comp.num_outputs)  # on a CPU, `auto` times the settings once per machine
        artifacts.write_json(job_file, {"fold": fold, "inputs": inputs, "resume": str(resume) if resume else None,
                                        "processes": expected, "speed": speed.as_json(), "report": report,
                                        "config": cfg.model_dump(mode="json")})
        return run_launch(argv, env)


def train_worker(job_file: str) -> None:
    """Inside `accelerate launch` (or run by hand): train the fold that worker.json describes."""
    # Imported here, in the worker only: the launching process never needs the training loop,
    # and accelerate's import would add seconds to every `make train`, even an up-to-date one.
    from podium.train.loop import train_fold

    try:
        job = artifacts.read_json(job_file)
    except (OSError, ValueError) as exc:
        raise PodiumError(f"{job_file}: cannot read the worker's inputs ({exc})") from None
    cfg = config_from_dict(job["config"], source=str(job_file))
    resume = Path(job["resume"]) if job["resume"] else None
    if resume is not None and not resume.is_dir():
        raise PodiumError(f"{job_file}: its resume checkpoint {resume} is gone (a later run replaced it); "
                          f"run make train FOLD={job['fold']} to resume from the newest one")
    speed = Speed(**job["speed"]) if job.get("speed") else None
    reporter = None
    if job.get("report"):
        from podium.train.trial_report import TrialReporter

        reporter = TrialReporter.from_job(cfg.tune, cfg.train.epochs, job["report"])
    train_fold(cfg, int(job["fold"]), job["inputs"], job["processes"], resume, speed, reporter)
