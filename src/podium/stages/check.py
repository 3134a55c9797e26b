"""`make check`: the config and the competition validated, every image decoded (and cached, with
data.cache), the model built; nothing is trained. One line: ok, or the first problem. `make train`
runs the same checks (preflight) before it launches a training process."""

from __future__ import annotations

import importlib.util

from podium.config import Config
from podium.config.schema import fine_tuning_note
from podium.console import say
from podium.data.cache import build_cache, cache_key
from podium.data.competition import Competition, image_files
from podium.data.datasets import check_transforms
from podium.data.splits import split_folds
from podium.errors import PodiumError
from podium.evaluate.submission import submission_kind
from podium.runs import layout
from podium.stages.current import data_fingerprint, load_checked, teacher_digest
from podium.train.models import check_fine_tuning, create_model
from podium.train.schedule import size_at, updates_per_epoch


def preflight(cfg: Config, processes: int = 1) -> tuple[Competition, str]:
    """Every check that can run before training, in one process, writing nothing until all pass:
    the tables, the sample submission against the task and metric, the folds (and that every
    training fold fills a batch on each of `processes`),
    the augmentation pipelines, the model, every image.

    Returns the competition and a content hash of its data (CSV files and images).
    """
    comp, csv_hash = load_checked(cfg)
    submission_kind(comp, cfg)  # the sample submission fits the task, metric and submission.kind
    if cfg.log_with:
        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[cfg.log_with]
        if importlib.util.find_spec(module) is None:
            raise PodiumError(f"config key 'log_with': {cfg.log_with} needs the '{module}' package "
                              f"(pip install {module} into .venv), or set log_with: null")
    largest_valid = int(split_folds(comp.train, cfg)["fold"].value_counts().max())
    extra = len(comp.extra) if comp.extra is not None else 0
    updates_per_epoch(len(comp.train) - largest_valid + extra, cfg, processes)

    for size in sorted({cfg.train.image_size, *(size_at(e, cfg) for e in range(cfg.train.epochs))}):
        check_transforms(cfg.augment, size)  # every size progressive resizing will ask for
    # An unknown model or weights file, or a train key the model cannot honour, fails here, not on a GPU.
    check_fine_tuning(create_model(cfg.model, comp.num_outputs, comp.feature_width), cfg)
    data_hash = data_fingerprint(cfg, comp, csv_hash)
    if cfg.data.cache:
        paths = [str(p) for p in image_files(comp)]
        build_cache(paths, cfg.train.image_size, layout.image_cache_dir(cfg),
                    cache_key(data_hash, cfg.train.image_size))
    return comp, data_hash


def run_check(cfg: Config) -> None:
    comp, _ = preflight(cfg)
    teacher_digest(cfg, comp)  # a teacher that is missing, stale or of another competition
    what = {"multiclass": "classes", "binary": "classes", "multilabel": "labels"}.get(comp.task)
    outputs = f"{len(comp.prob_columns)} {what}" if what else "one value per image"
    extra = f", {len(comp.extra)} extra training rows (data.extra)" if comp.extra is not None else ""
    say(f"ok: {len(comp.train)} train rows{extra}, {len(comp.test)} test rows, {comp.task}: {outputs}; "
        f"the submission holds {submission_kind(comp, cfg)}s in {cfg.data.sample_submission}'s shape")
    if comp.features:
        kinds = ", ".join(f"{c.name} ({c.kind}" + (f", {len(c.levels)} categories)" if c.levels else ")")
                          for c in comp.features)
        say(f"metadata (data.features): {kinds}: {comp.feature_width} model inputs")
    if note := fine_tuning_note(cfg):  # what the weights change in the recipe, before any training
        say(note)
