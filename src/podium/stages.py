"""The pipeline stages: folds, train (launch), oof, submit.

Each stage records the hashes of its inputs with its outputs (artifacts.mark_done) and is
skipped when they still match. Everything that can be checked is checked here, in one process,
before a training process starts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .checkpoint import FoldLock, find_resumable
from .competition import Competition, check_images, load_competition
from .config import Config, config_hash
from .errors import PodiumError

# Config sections that decide the folds; changing e.g. the epochs must not reshuffle them.
FOLD_SECTIONS = ("seed", "data", "folds")
# Everything but the submission format decides a trained fold.
TRAIN_SECTIONS = ("seed", "data", "folds", "model", "train", "scheduler", "mix", "loss", "resize", "augment",
                  "predict", "metric")


def _out(msg: str) -> None:
    print(msg, flush=True)


def ensure_demo_data(cfg: Config) -> None:
    """The demo competition is written on first use, so a fresh clone runs with no download."""
    from .demo import DEMO_DIR, write_demo

    if Path(cfg.data.dir) == DEMO_DIR and not (DEMO_DIR / "sample_submission.csv").is_file():
        _out(f"writing the demo competition to {DEMO_DIR}/")
        write_demo(DEMO_DIR)


def load_checked(cfg: Config) -> tuple[Competition, str]:
    """The competition's tables, checked, and a hash of the three CSV files."""
    ensure_demo_data(cfg)
    comp = load_competition(cfg)
    root = cfg.data_dir
    csvs = [artifacts.file_hash(root / name) for name in
            (cfg.data.train_csv, cfg.data.test_csv, cfg.data.sample_submission)]
    return comp, artifacts.text_hash(*csvs)


def preflight(cfg: Config, processes: int = 1) -> tuple[Competition, str]:
    """Every check that can run before training, in one process, writing nothing until all pass:
    the tables, the folds (and that every training fold fills a batch on each of `processes`),
    the augmentation pipelines, the model, every image.

    Returns the competition and a content hash of its data (CSV files and images).
    """
    from .data import check_transforms
    from .folds import split_folds
    from .models import create_model

    comp, csv_hash = load_checked(cfg)
    if cfg.log_with:
        import importlib.util

        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[cfg.log_with]
        if importlib.util.find_spec(module) is None:
            raise PodiumError(f"config key 'log_with': {cfg.log_with} needs the '{module}' package "
                              f"(pip install {module} into .venv), or set log_with: null")
    from .schedule import size_at, updates_per_epoch

    largest_valid = int(split_folds(comp.train, cfg)["fold"].value_counts().max())
    updates_per_epoch(len(comp.train) - largest_valid, cfg, processes)

    for size in sorted({cfg.train.image_size, *(size_at(e, cfg) for e in range(cfg.train.epochs))}):
        check_transforms(cfg.augment, size)  # every size progressive resizing will ask for
    create_model(cfg.model, comp.num_outputs)  # an unknown model or weights file fails here, not on a GPU
    cache_file = cfg.run_dir / "image-check.json"
    images_hash, checked = check_images(comp, cache_file)
    artifacts.write_json(cache_file, checked)
    data_hash = artifacts.text_hash(csv_hash, images_hash)
    if cfg.data.cache:
        from .cache import build_cache, cache_key

        paths = [str(p) for p in (*comp.train["path"], *comp.test["path"])]
        build_cache(paths, cfg.train.image_size, cfg.run_dir / "cache", cache_key(data_hash, cfg.train.image_size))
    return comp, data_hash


# ---------------------------------------------------------------------------------------------


def run_folds(cfg: Config, comp: Competition | None = None) -> Path:
    from .folds import split_folds

    if comp is None:
        comp, _ = load_checked(cfg)
    out = cfg.run_dir / "folds.csv"
    inputs = {"config": config_hash(cfg, FOLD_SECTIONS),
              "train_csv": artifacts.file_hash(cfg.data_dir / cfg.data.train_csv)}
    if artifacts.is_up_to_date(cfg.run_dir, "folds", inputs):
        _out(f"{out} is up to date")
        return out
    folds = split_folds(comp.train, cfg)
    artifacts.write_csv(out, folds)
    artifacts.mark_done(cfg.run_dir, "folds", inputs, [out])
    sizes = folds["fold"].value_counts().sort_index().tolist()
    _out(f"wrote {out}: {cfg.folds.n_splits} folds ({cfg.folds.strategy}), rows per fold {sizes}")
    return out


def train_inputs(cfg: Config, fold: int, data_hash: str) -> dict[str, str]:
    return {"config": config_hash(cfg, TRAIN_SECTIONS), "folds": artifacts.file_hash(cfg.run_dir / "folds.csv"),
            "data": data_hash, "fold": str(fold)}


def run_train(cfg: Config, fold: int, nproc: int | None = None, fresh: bool = False,
              accelerate_config: str | None = None, port: int | None = None) -> int:
    """Check everything, then train one fold under `accelerate launch`; returns its exit code."""
    from .launch import launch_command, run_launch

    if not 0 <= fold < cfg.folds.n_splits:
        raise PodiumError(f"FOLD={fold}: folds are numbered 0 to {cfg.folds.n_splits - 1} (folds.n_splits)")
    worker = ["train-worker", "--fold", str(fold)]
    argv, env, expected = launch_command(worker, nproc, fold, accelerate_config, port)
    comp, data_hash = preflight(cfg, processes=expected or 1)
    run_folds(cfg, comp)
    fold_dir = cfg.run_dir / f"fold{fold}"
    inputs = train_inputs(cfg, fold, data_hash)
    if not fresh and artifacts.is_up_to_date(fold_dir, "train", inputs):
        _out(f"{fold_dir} is up to date (FRESH=1 trains it again)")
        return 0
    with FoldLock(fold_dir):
        ckpt_root = fold_dir / "checkpoint"
        if fresh:
            shutil.rmtree(ckpt_root, ignore_errors=True)
        resume, notes = find_resumable(ckpt_root, inputs)
        for note in notes:
            _out(note)
        artifacts.forget(fold_dir, "train")
        env["PODIUM_CONFIG_JSON"] = cfg.model_dump_json()
        env["PODIUM_STAGE_INPUTS"] = json.dumps(inputs)
        if resume is not None:
            env["PODIUM_RESUME"] = str(resume)
        if expected is not None:
            env["PODIUM_EXPECT_PROCESSES"] = str(expected)
        return run_launch(argv, env)


def train_worker(fold: int) -> None:
    """Inside `accelerate launch`: the config arrives resolved from the launching process."""
    from .config import config_from_dict
    from .engine import train_fold

    cfg = config_from_dict(json.loads(os.environ["PODIUM_CONFIG_JSON"]))
    inputs = json.loads(os.environ["PODIUM_STAGE_INPUTS"])
    expected = os.environ.get("PODIUM_EXPECT_PROCESSES")
    resume = os.environ.get("PODIUM_RESUME")
    train_fold(cfg, fold, inputs, int(expected) if expected else None, Path(resume) if resume else None)


# ---------------------------------------------------------------------------------------------


def _fold_files(cfg: Config, name: str) -> list[Path]:
    paths = [cfg.run_dir / f"fold{k}" / name for k in range(cfg.folds.n_splits)]
    missing = [k for k, p in enumerate(paths) if not p.is_file()]
    if missing:
        raise PodiumError(
            f"fold(s) {', '.join(map(str, missing))} of {cfg.run_dir} have no {name}: "
            f"run make train FOLD=k for each (or make cv)"
        )
    return paths


def run_oof(cfg: Config) -> dict:
    """Join the folds' out-of-fold predictions (each train row exactly once) and score them."""
    from .data import encode_targets
    from .metrics import score, score_all

    comp, _ = load_checked(cfg)
    id_col = cfg.data.id_column
    cols = comp.prob_columns
    folds_path = cfg.run_dir / "folds.csv"
    if not folds_path.is_file():
        raise PodiumError(f"{folds_path} not found: run make folds and make cv first")
    paths = _fold_files(cfg, "oof.csv")
    out_csv, out_json = cfg.run_dir / "oof.csv", cfg.run_dir / "cv.json"
    inputs = {"config": config_hash(cfg, TRAIN_SECTIONS), "folds": artifacts.file_hash(folds_path),
              **{f"fold{k}": artifacts.file_hash(p) for k, p in enumerate(paths)}}
    if artifacts.is_up_to_date(cfg.run_dir, "oof", inputs):
        cv = artifacts.read_json(out_json)
        _out(f"{out_json} is up to date")
        print_cv(cv)
        return cv

    folds = pd.read_csv(folds_path, dtype={id_col: str})
    fold_of = dict(zip(folds[id_col], folds["fold"]))
    parts = []
    for k, path in enumerate(paths):
        part = pd.read_csv(path, dtype={id_col: str})
        expected = {i for i, f in fold_of.items() if f == k}
        got = part[id_col]
        if got.duplicated().any() or set(got) != expected:
            raise PodiumError(f"{path}: its ids are not exactly the rows of fold {k} in {folds_path}; retrain it")
        parts.append(part.assign(fold=k))
    oof = pd.concat(parts, ignore_index=True)
    train_ids = comp.train[id_col]
    if len(oof) != len(train_ids) or set(oof[id_col]) != set(train_ids):
        raise PodiumError(f"the folds' oof.csv files do not cover {cfg.data.train_csv} exactly once; rerun make folds")
    oof = oof.set_index(id_col).loc[train_ids.to_numpy()].reset_index()  # train.csv's row order

    y = encode_targets(comp.train, comp.classes, comp.task, cfg.data.target_columns)
    probs = oof[cols].to_numpy(dtype=np.float64)
    if comp.task == "binary":
        probs = probs[:, 0]
    fold_scores = [score(cfg.metric, y[oof["fold"].to_numpy() == k], probs[oof["fold"].to_numpy() == k], comp.task)
                   for k in range(cfg.folds.n_splits)]
    cv = {
        "experiment": cfg.experiment,
        "metric": cfg.metric,
        "score": score(cfg.metric, y, probs, comp.task),
        "fold_scores": fold_scores,
        "mean": float(np.mean(fold_scores)),
        "std": float(np.std(fold_scores)),
        "folds": cfg.folds.n_splits,
        "rows": int(len(oof)),
        "other_metrics": score_all(y, probs, comp.task),
    }
    artifacts.write_csv(out_csv, oof[[id_col, "fold", *cols]])
    artifacts.write_json(out_json, cv)
    artifacts.mark_done(cfg.run_dir, "oof", inputs, [out_csv, out_json])
    print_cv(cv)
    return cv


def print_cv(cv: dict) -> None:
    m = cv["metric"]
    lines = [f"{'fold':>6}  {m:>10}"]
    lines += [f"{k:>6}  {s:>10.5f}" for k, s in enumerate(cv["fold_scores"])]
    lines += [f"{'mean':>6}  {cv['mean']:>10.5f} ± {cv['std']:.5f}", f"{'OOF':>6}  {cv['score']:>10.5f}"]
    others = "  ".join(f"{k} {v:.5f}" for k, v in cv["other_metrics"].items() if k != m)
    _out("\n".join(lines) + f"\nother OOF metrics: {others}")


def run_schedule(cfg: Config, nproc: int = 1) -> Path:
    """schedule.csv (update, epoch, lr, image_size) and schedule.png, from the config alone,
    for the largest training fold; nothing is trained."""
    from .folds import split_folds
    from .plots import plot_schedule
    from .schedule import lr_curve, size_at, updates_per_epoch

    comp, _ = load_checked(cfg)
    sizes = split_folds(comp.train, cfg)["fold"].value_counts()
    n_train = len(comp.train) - int(sizes.min())  # the fold with the smallest validation part
    per_epoch = updates_per_epoch(n_train, cfg, nproc)
    lrs = lr_curve(cfg, per_epoch)
    epochs = np.arange(len(lrs)) // per_epoch
    table = pd.DataFrame({"update": np.arange(len(lrs)), "epoch": epochs, "lr": lrs,
                          "image_size": [size_at(int(e), cfg) for e in epochs]})
    out = cfg.run_dir / "schedule.csv"
    artifacts.write_csv(out, table)
    png = plot_schedule(table, cfg, cfg.run_dir / "schedule.png")
    _out(f"wrote {out} and {png}: {len(table)} updates ({per_epoch} per epoch, {n_train} training rows, "
         f"{nproc} process(es)); sizes by epoch: {[size_at(e, cfg) for e in range(cfg.train.epochs)]}")
    return out


def run_submit(cfg: Config) -> Path:
    """Average the folds' test probabilities and write the submission in sample_submission's shape."""
    from .submission import build_submission

    comp, _ = load_checked(cfg)
    id_col = cfg.data.id_column
    cols = comp.prob_columns
    paths = _fold_files(cfg, "test.csv")
    out = Path(cfg.submissions_dir) / f"{cfg.experiment}.csv"
    inputs = {"config": config_hash(cfg),
              "sample": artifacts.file_hash(cfg.data_dir / cfg.data.sample_submission),
              **{f"fold{k}": artifacts.file_hash(p) for k, p in enumerate(paths)}}
    if artifacts.is_up_to_date(cfg.run_dir, "submit", inputs):
        _out(f"{out} is up to date")
        return out
    test_ids = set(comp.test[id_col])
    total = None
    for k, path in enumerate(paths):
        part = pd.read_csv(path, dtype={id_col: str})
        if part[id_col].duplicated().any() or set(part[id_col]) != test_ids:
            raise PodiumError(f"{path}: its ids are not exactly the ids of {cfg.data.test_csv}; retrain fold {k}")
        part = part.set_index(id_col)[cols]
        total = part if total is None else total + part.loc[total.index]
    mean = total / len(paths)
    sub = build_submission(comp, cfg, mean)
    artifacts.write_csv(out, sub)
    artifacts.mark_done(cfg.run_dir, "submit", inputs, [out])
    _out(f"wrote {out}: {len(sub)} rows, columns {list(sub.columns)}, mean of {len(paths)} folds")
    return out
