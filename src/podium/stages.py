"""The pipeline stages: folds, train (launch), oof, submit.

Each stage records the hashes of its inputs with its outputs (artifacts.mark_done) and is
skipped when they still match. Everything that can be checked is checked here, in one process,
before a training process starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts, runs
from .checkpoint import FoldLock, find_resumable
from .competition import Competition, check_images, load_competition
from .config import Config, config_from_dict, config_hash
from .errors import PodiumError
from .finished import Finished, is_blend, read_finished, same_competition, saved_config


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
            (cfg.data.train_csv, cfg.data.test_csv, cfg.data.sample_submission) if name]
    return comp, artifacts.text_hash(*csvs)


def preflight(cfg: Config, processes: int = 1) -> tuple[Competition, str]:
    """Every check that can run before training, in one process, writing nothing until all pass:
    the tables, the sample submission against the task and metric, the folds (and that every
    training fold fills a batch on each of `processes`),
    the augmentation pipelines, the model, every image.

    Returns the competition and a content hash of its data (CSV files and images).
    """
    from .data import check_transforms
    from .folds import split_folds
    from .models import check_fine_tuning, create_model
    from .submission import submission_kind

    comp, csv_hash = load_checked(cfg)
    submission_kind(comp, cfg)  # the sample submission fits the task, metric and submission.kind
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
    # An unknown model or weights file, or a train key the model cannot honour, fails here, not on a GPU.
    check_fine_tuning(create_model(cfg.model, comp.num_outputs), cfg)
    data_hash = data_fingerprint(cfg, comp, csv_hash)
    if cfg.data.cache:
        from .cache import build_cache, cache_key

        paths = [str(p) for p in (*comp.train["path"], *comp.test["path"])]
        build_cache(paths, cfg.train.image_size, runs.image_cache_dir(cfg), cache_key(data_hash, cfg.train.image_size))
    return comp, data_hash


def data_fingerprint(cfg: Config, comp: Competition, csv_hash: str) -> str:
    """A content hash of the competition's CSV files and every image (each image checked to
    decode; unchanged files are known by their size and mtime, so this is cheap after the first run)."""
    cache_file = runs.image_check_file(cfg)
    images_hash, checked = check_images(comp, cache_file)
    artifacts.write_json(cache_file, checked)
    return artifacts.text_hash(csv_hash, images_hash)


def load_current(cfg: Config, folds: list[int]) -> Competition:
    """The competition, after checking that each of `folds` is trained and current for this
    config, folds.csv, data and teachers (a one-line refusal naming the fold and what differs)."""
    comp, csv_hash = load_checked(cfg)
    if not runs.folds_csv(cfg).is_file():
        raise PodiumError(f"{runs.folds_csv(cfg)} not found: run make folds and make cv first")
    runs.check_folds(cfg, folds, data_fingerprint(cfg, comp, csv_hash), teacher_digest(cfg, comp))
    return comp


# ---------------------------------------------------------------------------------------------
# Finished runs: an experiment whose folds are all current, or a blend of such. What a blend joins
# and what a student learns from (distillation, pseudo-labels).


def finished_run(runs_dir: str | Path, name: str) -> Finished:
    """Experiment or blend `name` under `runs_dir`, refused unless every fold (or member) is
    trained and current; an experiment's OOF scored (make oof) if that was not done yet."""
    if is_blend(runs_dir, name):
        from .blending import check_blend

        check_blend(runs_dir, name)
    else:
        cfg = saved_config(runs_dir, name)
        run_oof(cfg, show=False)  # refuses folds that are not current; skipped when up to date
    return read_finished(runs_dir, name)


def teacher_digest(cfg: Config, comp: Competition) -> str:
    """A digest of the teachers' predictions a student trains on ("" without teachers); checks
    each teacher is finished and of this competition."""
    parts = []
    for key, name in (("distill.teacher", cfg.distill.teacher), ("pseudo.teacher", cfg.pseudo.teacher)):
        if name == cfg.experiment:
            raise PodiumError(f"config key '{key}': {name} is this experiment; a teacher is another run")
        if name:
            teacher = finished_run(cfg.runs_dir, name)
            same_competition(teacher.comp, comp, f"config key '{key}': teacher {name} and this experiment")
            parts.append(f"{key}={teacher.digest}")
    return artifacts.text_hash(*parts) if parts else ""


# ---------------------------------------------------------------------------------------------


def run_folds(cfg: Config, comp: Competition | None = None) -> Path:
    from .folds import split_folds

    if comp is None:
        comp, _ = load_checked(cfg)
    out = runs.folds_csv(cfg)
    inputs = {"config": config_hash(cfg, runs.FOLD_SECTIONS),
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


def run_train(cfg: Config, fold: int, nproc: int | None = None, fresh: bool = False,
              accelerate_config: str | None = None, port: int | None = None, pin_gpu: bool = False) -> int:
    """Check everything, then train one fold under `accelerate launch`; returns its exit code.

    The worker's inputs (the resolved config, the stage inputs, the resume point, the process
    count) go to fold<k>/worker.json, named on its command line, so it can be rerun by hand.
    """
    from .launch import launch_command, run_launch
    from .speed import resolve

    if not 0 <= fold < cfg.folds.n_splits:
        raise PodiumError(f"FOLD={fold}: folds are numbered 0 to {cfg.folds.n_splits - 1} (folds.n_splits)")
    out = runs.fold_dir(cfg, fold)
    job_file = out / runs.WORKER_JSON
    argv, env, expected = launch_command(["train-worker", str(job_file)], nproc, fold, accelerate_config, port,
                                         pin_gpu=pin_gpu)
    comp, data_hash = preflight(cfg, processes=expected or 1)
    teachers = teacher_digest(cfg, comp)
    run_folds(cfg, comp)
    if not fresh and runs.stale_reason(cfg, fold, data_hash, teachers) is None:
        _out(f"{out} is up to date (FRESH=1 trains it again)")
        return 0
    inputs = runs.train_inputs(cfg, fold, data_hash, teachers)
    with FoldLock(out):
        ckpt_root = out / runs.CHECKPOINTS
        if fresh:
            shutil.rmtree(ckpt_root, ignore_errors=True)
        resume, notes = find_resumable(ckpt_root, inputs)
        for note in notes:
            _out(note)
        runs.clear_fold(cfg, fold)
        speed = resolve(cfg, comp.num_outputs)  # on a CPU, `auto` times the settings once per machine
        artifacts.write_json(job_file, {"fold": fold, "inputs": inputs, "resume": str(resume) if resume else None,
                                        "processes": expected, "speed": speed.as_json(),
                                        "config": cfg.model_dump(mode="json")})
        return run_launch(argv, env)


def train_worker(job_file: str) -> None:
    """Inside `accelerate launch` (or run by hand): train the fold that worker.json describes."""
    from .engine import train_fold
    from .speed import Speed

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
    train_fold(cfg, int(job["fold"]), job["inputs"], job["processes"], resume, speed)


# ---------------------------------------------------------------------------------------------


def oof_predictions(cfg: Config, comp: Competition, folds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of train.csv, their OOF predictions (n, C), their fold) for the rows of `folds`, in
    train.csv's order; each fold's file must hold exactly its rows of folds.csv."""
    id_col, cols = cfg.data.id_column, comp.prob_columns
    folds_path = runs.folds_csv(cfg)
    table = pd.read_csv(folds_path, dtype={id_col: str})
    fold_of = pd.Series(table["fold"].to_numpy(), index=table[id_col].to_numpy())
    train_ids = comp.train[id_col].to_numpy()
    if len(table) != len(train_ids) or set(fold_of.index) != set(train_ids):
        raise PodiumError(f"{folds_path} does not cover {cfg.data.train_csv} exactly once; rerun make folds")
    fold_col = fold_of.loc[train_ids].to_numpy()
    rows = np.flatnonzero(np.isin(fold_col, folds))
    parts = [runs.read_fold(cfg, k, runs.OOF_CSV, cols, expected_ids=fold_of.index[fold_of.to_numpy() == k])
             for k in folds]
    joined = runs.Predictions(np.concatenate([p.ids for p in parts]), np.concatenate([p.probs for p in parts]))
    return rows, joined.in_order(train_ids[rows]), fold_col[rows]


def postprocess_kind(cfg: Config, comp: Competition) -> str:
    from .postprocess import kind_for

    return kind_for(comp.task, cfg.metric) if cfg.postprocess.enabled else "none"


def run_oof(cfg: Config, show: bool = True) -> dict:
    """Join the folds' out-of-fold predictions (each train row exactly once) and score them.
    Every fold must be trained and current for this config (runs.check_folds).

    Post-processing that the metric rewards (thresholds, cut-points, a temperature) is fitted on
    the whole OOF for the submission (postprocess.json), and scored nested: for each fold,
    fitted on the other folds' rows. That nested score is the CV score; the score without
    post-processing and the in-sample one (optimistic, for reference) are kept beside it.
    """
    n = cfg.folds.n_splits
    comp = load_current(cfg, list(range(n)))
    paths = [runs.fold_dir(cfg, k) / runs.OOF_CSV for k in range(n)]
    out_json = cfg.run_dir / "cv.json"
    kind = postprocess_kind(cfg, comp)
    inputs = {"config": config_hash(cfg, runs.training_sections(cfg)), "postprocess": kind,
              "folds": artifacts.file_hash(runs.folds_csv(cfg)),
              **{f"fold{k}": artifacts.file_hash(p) for k, p in enumerate(paths)}}
    if artifacts.is_up_to_date(cfg.run_dir, "oof", inputs):
        cv = artifacts.read_json(out_json)
        if show:
            _out(f"{out_json} is up to date")
            print_cv(cv)
        return cv

    _, probs, fold_col = oof_predictions(cfg, comp, list(range(n)))
    cv, fitted = score_oof(cfg, comp, probs, fold_col, kind)
    outputs = [write_oof(cfg, comp, probs, fold_col), out_json, *write_postprocess(cfg, fitted)]
    artifacts.write_json(out_json, cv)
    artifacts.mark_done(cfg.run_dir, "oof", inputs, outputs)
    if show:
        print_cv(cv)
    return cv


def score_oof(cfg: Config, comp: Competition, probs: np.ndarray, fold: np.ndarray, kind: str
              ) -> tuple[dict, dict | None]:
    """cv.json's content for OOF predictions of every train.csv row (in its order; `fold`: each
    row's fold), and the post-processing `kind` fitted on all of them (JSON, or None).

    Without post-processing the score is the metric on the whole OOF and on each fold. With it,
    both are nested (each fold's rows transformed by a fit on the other folds'), and the score
    without it and the in-sample one are kept under `postprocess`.
    """
    from .metrics import score, score_all
    from .postprocess import evaluate

    metric, task = cfg.metric, comp.task
    y, folds = comp.encode(comp.train), np.unique(fold)
    cv = {"experiment": cfg.experiment, "metric": metric, "score": score(metric, y, probs, task),
          "fold_scores": [score(metric, y[fold == k], probs[fold == k], task) for k in folds]}
    fitted = None
    if kind != "none":
        post = evaluate(y, probs, fold, metric, task, comp.classes)
        cv.update(score=post["score"], fold_scores=post["fold_scores"])
        cv["postprocess"] = {k: v for k, v in post.items() if k not in ("score", "fold_scores", "fitted")}
        fitted = post["fitted"]
    cv.update(mean=float(np.mean(cv["fold_scores"])), std=float(np.std(cv["fold_scores"])), folds=len(folds),
              rows=int(len(y)), other_metrics=score_all(y, probs, task))
    return cv, fitted


def write_oof(cfg: Config, comp: Competition, probs: np.ndarray, fold: np.ndarray) -> Path:
    """The run's oof.csv: id, fold, the prediction columns, in train.csv's row order."""
    oof = runs.Predictions(comp.train[cfg.data.id_column].to_numpy(), probs).frame(comp.prob_columns,
                                                                                  cfg.data.id_column)
    oof.insert(1, "fold", fold)
    return artifacts.write_csv(cfg.run_dir / runs.OOF_CSV, oof)


def write_postprocess(cfg: Config, fitted: dict | None) -> list[Path]:
    """The run's postprocess.json, or none: a submission must not apply what an earlier config fitted."""
    path = cfg.run_dir / runs.POSTPROCESS_JSON
    if fitted is None:
        path.unlink(missing_ok=True)
        return []
    return [artifacts.write_json(path, fitted)]


def print_cv(cv: dict) -> None:
    m, post = cv["metric"], cv.get("postprocess")
    if post is None:
        lines = [f"{'fold':>6}  {m:>10}"]
        lines += [f"{k:>6}  {s:>10.5f}" for k, s in enumerate(cv["fold_scores"])]
    else:  # the nested score with post-processing, and the plain one beside it
        lines = [f"{'fold':>6}  {m + ' +' + post['kind']:>22}  {'without':>10}"]
        lines += [f"{k:>6}  {s:>22.5f}  {w:>10.5f}"
                  for k, (s, w) in enumerate(zip(cv["fold_scores"], post["fold_scores_without"], strict=True))]
    width = 10 if post is None else 22
    lines += [f"{'mean':>6}  {cv['mean']:>{width}.5f} ± {cv['std']:.5f}", f"{'OOF':>6}  {cv['score']:>{width}.5f}"]
    if post is not None:
        lines.append(f"{post['kind']} fitted on the other folds for each fold (nested); without it {m} "
                     f"{post['score_without']:.5f}; fitted and scored on the same rows (in-sample, optimistic) "
                     f"{post['score_in_sample']:.5f}")
    others = "  ".join(f"{k} {v:.5f}" for k, v in cv["other_metrics"].items() if k != m)
    _out("\n".join(lines) + f"\nother OOF metrics (no post-processing): {others}")


def lr_scale_range(cfg: Config, comp: Competition) -> tuple[float, float]:
    """The smallest and largest `lr_scale` of the optimizer's parameter groups: (1, 1) unless
    `train.layer_decay` is set; then those of timm's layer groups, from the model built on the CPU."""
    if cfg.train.layer_decay is None:
        return 1.0, 1.0
    from .engine import build_optimizer
    from .models import check_fine_tuning, create_model

    model = create_model(cfg.model, comp.num_outputs)
    check_fine_tuning(model, cfg)
    scales = [group["lr_scale"] for group in build_optimizer(model, cfg).param_groups]
    return min(scales), max(scales)


def run_schedule(cfg: Config, nproc: int = 1) -> Path:
    """schedule.csv and schedule.png, from the config alone, for the largest training fold;
    nothing is trained. Per update: epoch, lr (the schedule's), image_size, frozen (only the
    classifier trains), and lr_group_min / lr_group_max, the lowest and highest lr any parameter
    group gets (layer decay scales them; a frozen backbone's is 0)."""
    from .folds import split_folds
    from .plots import plot_schedule
    from .schedule import lr_curve, resize_note, size_at, updates_per_epoch

    comp, _ = load_checked(cfg)
    sizes = split_folds(comp.train, cfg)["fold"].value_counts()
    n_train = len(comp.train) - int(sizes.min())  # the fold with the smallest validation part
    per_epoch = updates_per_epoch(n_train, cfg, nproc)
    lrs = np.asarray(lr_curve(cfg, per_epoch))
    epochs = np.arange(len(lrs)) // per_epoch
    frozen = epochs < cfg.train.freeze_epochs
    low, high = lr_scale_range(cfg, comp)  # the classifier sits in timm's top group: scale `high`
    table = pd.DataFrame({"update": np.arange(len(lrs)), "epoch": epochs, "lr": lrs,
                          "image_size": [size_at(int(e), cfg) for e in epochs], "frozen": frozen,
                          "lr_group_min": np.where(frozen, 0.0, lrs * low), "lr_group_max": lrs * high})
    out = cfg.run_dir / "schedule.csv"
    artifacts.write_csv(out, table)
    png = plot_schedule(table, cfg, cfg.run_dir / "schedule.png")
    _out(f"wrote {out} and {png}: {len(table)} updates ({per_epoch} per epoch, {n_train} training rows, "
         f"{nproc} process(es)); sizes by epoch: {[size_at(e, cfg) for e in range(cfg.train.epochs)]}")
    if note := resize_note(cfg):
        _out(note)
    return out


def submission_path(cfg: Config, folds: list[int] | None = None) -> Path:
    """submissions/<exp>.csv; a submission from some folds only is named for them
    (<exp>.folds-0-2.csv), so it cannot be taken for the full one."""
    n = cfg.folds.n_splits
    if folds is None or sorted(folds) == list(range(n)):
        return Path(cfg.submissions_dir) / f"{cfg.experiment}.csv"
    return Path(cfg.submissions_dir) / f"{cfg.experiment}.folds-{'-'.join(map(str, sorted(folds)))}.csv"


def parse_folds(text: str | None, cfg: Config, key: str = "FOLDS") -> list[int] | None:
    """'0,2' -> [0, 2]; None or '' -> None (all folds)."""
    if not text or not text.strip():
        return None
    try:
        folds = sorted({int(f) for f in text.split(",") if f.strip()})
    except ValueError:
        raise PodiumError(f"{key}={text}: expected fold numbers such as 0,2") from None
    bad = [k for k in folds if not 0 <= k < cfg.folds.n_splits]
    if bad:
        raise PodiumError(f"{key}={text}: fold(s) {bad} do not exist (folds.n_splits={cfg.folds.n_splits})")
    return folds


def submission_postprocess(cfg: Config, comp: Competition, folds: list[int]):
    """What the submission applies: the run's postprocess.json (make oof, run here when it is not
    up to date) for all folds; for some folds, the same fit on those folds' OOF rows."""
    from .postprocess import fit

    kind = postprocess_kind(cfg, comp)
    if kind == "none":
        return None
    if len(folds) == cfg.folds.n_splits:
        run_oof(cfg)
        return runs.read_postprocess(cfg)
    rows, probs, _ = oof_predictions(cfg, comp, folds)
    return fit(kind, comp.encode(comp.train)[rows], probs, cfg.metric, comp.task, comp.classes)


def run_submit(cfg: Config, folds: list[int] | None = None) -> Path:
    """Average the folds' test probabilities and write the submission in sample_submission's shape.

    `folds`: some folds only (a quick leaderboard probe while the rest train); the file is then
    named for them. Every fold used must be trained and current for this config.
    """
    from .submission import build_submission

    n = cfg.folds.n_splits
    used = list(range(n)) if folds is None else sorted(folds)
    comp = load_current(cfg, used)
    id_col = cfg.data.id_column
    cols = comp.prob_columns
    paths = [runs.fold_dir(cfg, k) / runs.TEST_CSV for k in used]
    out = submission_path(cfg, used)
    stage = "submit" if len(used) == n else f"submit-folds-{'-'.join(map(str, used))}"
    post = submission_postprocess(cfg, comp, used)
    inputs = {"config": config_hash(cfg),
              "sample": artifacts.file_hash(cfg.data_dir / cfg.data.sample_submission),
              "postprocess": json.dumps(post.to_json() if post is not None else None, sort_keys=True),
              **{f"fold{k}": artifacts.file_hash(p) for k, p in zip(used, paths, strict=True)}}
    what = f"mean of {n} folds" if len(used) == n else \
        f"mean of folds {', '.join(map(str, used))} of {n} only: a partial submission"
    if post is not None:
        what += f", {post.kind} fitted on their out-of-fold predictions"
    if artifacts.is_up_to_date(cfg.run_dir, stage, inputs):
        _out(f"{out} is up to date ({what})")
        return out
    test_ids = comp.test[id_col].to_numpy()
    total = sum(runs.read_fold(cfg, k, runs.TEST_CSV, cols, expected_ids=test_ids).in_order(test_ids) for k in used)
    mean = pd.DataFrame(total / len(used), index=test_ids, columns=cols)
    sub = build_submission(comp, cfg, mean, post)
    artifacts.write_csv(out, sub)
    artifacts.mark_done(cfg.run_dir, stage, inputs, [out])
    _out(f"wrote {out}: {len(sub)} rows, columns {list(sub.columns)}; {what}")
    return out
