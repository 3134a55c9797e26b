"""`make tune`: an Optuna search over the config's `tune.space`, each trial an ordinary run.

A trial trains `tune.folds` of the config with the trial's values (and `tune.epochs`) in its own
experiment, `runs/<exp>/tune/t<hash of its values>/`: its folds have done-records like any
run's, so a trial whose values come again (a retried trial, a second worker) reuses them, and a
trial killed mid-fold resumes from the fold's checkpoint. Its score is the mean fold score by the
config's metric (each fold's OOF, as make oof scores it); each epoch's validation score goes to
the study through the training loop's tracker hook, and the pruner may stop the fold there.

The study lives in `runs/<exp>/tune.db` (SQLite): a killed search resumes where it stopped, and
the workers of `make -j N tune` share it. Trials run until the study holds `tune.trials` finished
ones (complete or pruned). A worker killed mid-trial stops its heartbeat; after twice
`tune.heartbeat_seconds` another worker (or the next make tune) marks that trial failed and tries
its values again.

The summary step writes tune.csv (every trial), best.yaml (the best trial's whole config, as
experiment `<exp>_best`, ready for `make cv`) and Optuna's plots, which `make report` shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config, config_from_dict
from podium.config.load import set_dotted
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.cv import fold_score
from podium.evaluate.metrics import higher_is_better
from podium.runs import layout
from podium.stages.current import load_checked
from podium.stages.train import run_train
from podium.train.checkpoint import process_alive
from podium.train.launch import BASE_PORT
from podium.train.trial_report import make_pruner

# Keys a trial may not change: they decide the folds, the data or where outputs go, so trials
# would no longer be scored on the same rows.
FIXED = ("seed", "experiment", "runs_dir", "submissions_dir", "data", "folds", "tune", "metric")
BEST_SUFFIX = "_best"


def storage_url(cfg: Config) -> str:
    return f"sqlite:///{(cfg.run_dir / layout.TUNE_DB).resolve()}"


def check_space(cfg: Config) -> None:
    """Every tune.space key names a config key a trial may change, with values of its type:
    checked before any training, each problem named by its key."""
    if not cfg.tune.space:
        raise PodiumError("tune.space is empty: name the keys to search, e.g. train.lr: {low: 1e-4, high: 1e-2}")
    tree = cfg.model_dump(mode="json")
    for dotted, spec in cfg.tune.space.items():
        where = f"tune.space.{dotted}"
        if dotted.split(".")[0] in FIXED:
            raise PodiumError(f"{where}: {dotted.split('.')[0]} decides the folds, the data or the outputs; "
                              "a trial may not change it")
        try:
            _lookup(tree, dotted)
        except (KeyError, TypeError):
            raise PodiumError(f"{where}: no such config key (docs/configuration.md lists them)") from None
        values = spec.choices if spec.choices is not None else [spec.low, spec.high]
        for value in values:
            probe = json.loads(json.dumps(tree))
            set_dotted(probe, dotted, value)
            try:
                config_from_dict(probe, source=where)
            except PodiumError as exc:
                raise PodiumError(f"{where}: the value {value!r} is refused ({exc})") from None
    bad = [k for k in cfg.tune.folds if not 0 <= k < cfg.folds.n_splits]
    if bad:
        raise PodiumError(f"tune.folds: fold(s) {bad} do not exist (folds.n_splits={cfg.folds.n_splits})")


def _suggest(trial, dotted: str, spec, integer: bool):
    if spec.choices is not None:
        return trial.suggest_categorical(dotted, spec.choices)
    if integer:
        return trial.suggest_int(dotted, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
    return trial.suggest_float(dotted, spec.low, spec.high, step=spec.step, log=spec.log)


def trial_config(cfg: Config, values: dict[str, object]) -> Config:
    """The config a trial trains: the base config, the trial's values and the tune epochs, as an
    experiment under runs/<exp>/tune/ named by a hash of what it changes."""
    changes = {**({"train.epochs": cfg.tune.epochs} if cfg.tune.epochs else {}), **values}  # a searched epochs wins
    tree = cfg.model_dump(mode="json")
    for dotted, value in changes.items():
        set_dotted(tree, dotted, value)
    digest = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()[:10]
    tree.update(runs_dir=str(cfg.run_dir / layout.TUNE_DIR), experiment=f"t{digest}")
    return config_from_dict(tree, source="tune")


def _study(cfg: Config, *, worker: int = 0):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = cfg.tune
    with warnings.catch_warnings():  # Optuna marks heartbeats experimental since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            storage_url(cfg), heartbeat_interval=t.heartbeat_seconds, grace_period=2 * t.heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
    direction = "maximize" if higher_is_better(cfg.metric) else "minimize"
    study = optuna.create_study(storage=storage, study_name=cfg.experiment, direction=direction, load_if_exists=True,
                                pruner=make_pruner(t, t.epochs or cfg.train.epochs))
    if study.direction.name.lower() != direction:
        raise PodiumError(f"{cfg.run_dir / layout.TUNE_DB}: its study {direction[:-1]}s no longer "
                          f"({cfg.metric}); delete it to search again")
    # Seeded by the worker and by how many trials the study holds: a resumed search (or a second
    # worker) draws new values, not the first ones again.
    seed = int(np.random.SeedSequence([t.seed, worker, len(study.trials)]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(t.startup_trials, 1))
    return study


def _fail_dead_workers(study) -> None:
    """A trial left running by a `make tune` on this machine whose process is gone (killed): failed
    now and its values queued again, as the heartbeat does after its grace period for a worker
    elsewhere."""
    import optuna
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")  # none recorded: left to the heartbeat
        if trial.user_attrs.get("host") != socket.gethostname() or not isinstance(pid, int) or process_alive(pid):
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)(study, study.trials[trial.number])
        say(f"tune trial {trial.number}: its process {trial.user_attrs['pid']} is gone; its values are tried again")


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_tune(cfg: Config, *, trials: int | None = None, worker: int = 0, step: str = "search",
             nproc: int | None = None, pin_gpu: bool = False) -> None:
    """step 'study': create the study (once, before the workers); 'search': run trials until the
    study holds `trials` (default tune.trials) finished ones; 'summary': tune.csv, best.yaml, plots."""
    check_space(cfg)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    if step == "study":
        study = _study(cfg)
        say(f"{cfg.run_dir / layout.TUNE_DB}: study {cfg.experiment}, {_finished(study)} finished trial(s)")
        return
    if step == "summary":
        summarize(cfg)
        return
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    # Every image checked once, before any trial; the trials share the data (tune.space may not change it).
    comp, _ = load_checked(cfg)
    target = trials or cfg.tune.trials
    study = _study(cfg, worker=worker)
    _fail_dead_workers(study)
    done = _finished(study)
    if done >= target:
        say(f"tune: the study already holds {done} finished trial(s) (TRIALS={target})")
        return
    tree = cfg.model_dump(mode="json")
    integer = {dotted: isinstance(_lookup(tree, dotted), int) and not isinstance(_lookup(tree, dotted), bool)
               for dotted in cfg.tune.space}

    def objective(trial) -> float:
        values = {dotted: _suggest(trial, dotted, spec, integer[dotted]) for dotted, spec in cfg.tune.space.items()}
        tcfg = trial_config(cfg, values)
        trial.set_user_attr("run", str(tcfg.run_dir))
        for key, value in (("worker", worker), ("host", socket.gethostname()), ("pid", os.getpid())):
            trial.set_user_attr(key, value)
        say(f"== tune trial {trial.number} (worker {worker}): {_shown(values)} -> {tcfg.run_dir} ==")
        scores = []
        for i, k in enumerate(cfg.tune.folds):
            # Optuna's storage names a trial by its id, which Trial keeps unexported.
            report = {"storage": storage_url(cfg), "study": cfg.experiment, "trial_id": trial._trial_id,
                      "metric": cfg.metric, "step_offset": i * tcfg.train.epochs}
            code = run_train(tcfg, k, nproc=nproc, pin_gpu=pin_gpu, gpu_slot=worker, report=report,
                             port=BASE_PORT + 100 + 16 * worker + k)
            pruned = layout.fold_dir(tcfg, k) / layout.PRUNED_JSON
            if pruned.is_file():
                # the fold's checkpoints are of no further use; its history.csv stays to look at
                shutil.rmtree(layout.fold_dir(tcfg, k) / layout.CHECKPOINTS, ignore_errors=True)
                raise optuna.TrialPruned(f"fold {k} after epoch {artifacts.read_json(pruned)['epoch'] + 1}")
            if code != 0 or not layout.is_trained(tcfg.run_dir, k):
                raise PodiumError(f"tune trial {trial.number}, fold {k}: training exited with code {code}")
            scores.append(fold_score(tcfg, comp, k))
        trial.set_user_attr("fold_scores", scores)
        return float(sum(scores) / len(scores))

    def progress(study, trial) -> None:
        if trial.state == TrialState.PRUNED:
            reported = trial.intermediate_values
            value = f" after {len(reported)} epoch(s), {cfg.metric} {reported[max(reported)]:.5f}"
        else:
            value = "" if trial.value is None else f" {cfg.metric} {trial.value:.5f}"
        say(f"tune trial {trial.number}: {trial.state.name.lower()}{value} ({_finished(study)}/{target} finished)")

    study.optimize(objective, callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                                         progress])


def _lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _shown(values: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def summarize(cfg: Config) -> dict:
    """tune.csv, best.yaml and the plots from the study as it stands; returns the best trial's
    {number, value, params, config}."""
    from optuna.trial import TrialState

    study = _study(cfg)
    trials = study.get_trials(deepcopy=False)
    # A trial's score is its folds' OOF score; a pruned trial has only its last epoch's validation score.
    rows = [{"trial": t.number, "state": t.state.name.lower(),
             cfg.metric: t.value if t.state == TrialState.COMPLETE else None,
             "last_epoch_score": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
             "epochs_reported": len(t.intermediate_values), **t.params, "run": t.user_attrs.get("run", "")}
            for t in trials]
    out = artifacts.write_csv(cfg.run_dir / layout.TUNE_CSV, pd.DataFrame(rows))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise PodiumError(f"{cfg.run_dir / layout.TUNE_DB}: no trial has finished yet (make tune runs them)")
    best = study.best_trial
    bcfg = trial_config(cfg, best.params)
    tree = bcfg.model_dump(mode="json")
    tree.update(runs_dir=cfg.runs_dir, experiment=cfg.experiment + BEST_SUFFIX)
    best_yaml = artifacts.write_yaml(cfg.run_dir / layout.TUNE_BEST_YAML, tree)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    say(f"wrote {out}: {len(complete)} complete, {pruned} pruned, "
        f"{sum(t.state == TrialState.FAIL for t in trials)} failed trial(s)"
        + (f", {running} running (a worker at it, or one killed elsewhere: retried after its heartbeat's grace)"
           if running else ""))
    overrides = " ".join(f"{k}={v!r}" for k, v in best.params.items())
    if cfg.tune.epochs:
        overrides += f" train.epochs={cfg.tune.epochs}"
    say(f"best: trial {best.number}, {cfg.metric} {best.value:.5f} (folds {cfg.tune.folds}) with "
        f'OVERRIDES="{overrides}"')
    say(f"wrote {best_yaml}: make cv CONFIG={best_yaml} trains it on every fold (experiment "
        f"{cfg.experiment + BEST_SUFFIX})",
        f"the best of {len(complete)} trials on the same rows flatters them; the folds outside tune.folds "
        f"{cfg.tune.folds} in that make cv never took part in the search: their scores are the honest ones")
    _plots(cfg, study, len(complete))
    return {"number": best.number, "value": best.value, "params": best.params, "config": best_yaml}


def _plots(cfg: Config, study, complete: int) -> None:
    import warnings

    import optuna.visualization.matplotlib as ov

    from podium.evaluate.plots import save_figure

    figures = [(layout.TUNE_HISTORY_PNG, ov.plot_optimization_history)]
    # Importances fit a random forest on the complete trials: meaningless on a handful.
    if complete >= 3 and len(cfg.tune.space) > 1:
        figures.append((layout.TUNE_IMPORTANCE_PNG, ov.plot_param_importances))
    else:
        (cfg.run_dir / layout.TUNE_IMPORTANCE_PNG).unlink(missing_ok=True)
    for name, plot in figures:
        with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore")
            fig = plot(study).figure
        fig.set_size_inches(7, 4)
        save_figure(fig, cfg.run_dir / name)
    say(f"wrote {', '.join(str(cfg.run_dir / n) for n, _ in figures)} (make report shows them)")
