"""`make tune`: an Optuna study of ordinary runs. Checked against Optuna's own record of the
study (tune.db): the median rule recomputed by hand for every pruned trial, a SIGKILL in the middle
of a trial, two workers on one study, and best.yaml retrained from scratch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from podium.config import load_config
from podium.errors import PodiumError
from podium.evaluate.cv import fold_score
from podium.runs import layout
from podium.stages.current import load_checked
from podium.stages.tune import check_space, storage_url, trial_config

from conftest import REPO, ok, podium, tiny_config, write_config

# lr 1e-7 learns nothing in 3 epochs; 0.02 learns the patterns: a bad trial after a good one is
# below the median at its first epoch and must be pruned.
SPACE = {"train.lr": {"choices": [1.0e-7, 0.02]}, "mix.mixup_alpha": {"choices": [0.0, 0.2]}}


def _config(tmp_path, competition, **tune):
    cfg = tiny_config(competition, tmp_path / "runs", train={"epochs": 3},
                      tune={"space": SPACE, "trials": 6, "startup_trials": 1, **tune})
    return write_config(cfg, tmp_path / "t.yaml")


def _study(path):
    cfg = load_config(path)
    return cfg, optuna.load_study(study_name=cfg.experiment, storage=storage_url(cfg))


def test_space_problems_are_refused_by_key_before_training(tmp_path, competition):
    base = tiny_config(competition, tmp_path / "runs")
    cases = {"train.nonsense": "no such config key", "folds.n_splits": "decides the folds",
             "train.lr": "is refused"}
    for key, message in cases.items():
        bad = base.model_copy(update={"tune": base.tune.model_copy(update={"space": {
            key: base.tune.space["train.lr"].model_copy(update={"low": -1.0, "log": False})}})})
        with pytest.raises(PodiumError, match=rf"tune\.space\.{key}: .*{message}"):
            check_space(bad)
    # a trial's folder is named by its values, so the same values find the same finished folds
    a, b = trial_config(base, {"train.lr": 0.01}), trial_config(base, {"train.lr": 0.01})
    assert a.run_dir == b.run_dir != trial_config(base, {"train.lr": 0.02}).run_dir
    assert a.train.lr == 0.01 and a.run_dir.parent == base.run_dir / layout.TUNE_DIR


@pytest.mark.slow
def test_a_killed_search_resumes_prunes_by_the_median_rule_and_best_yaml_reproduces(tmp_path, competition):
    path = _config(tmp_path, competition)
    ok(podium("tune", "--config", str(path), "--step", "study"))
    # The first trials' values, set here (Optuna's queue) so that a bad trial comes after a good one.
    cfg, study = _study(path)
    for lr in (0.02, 1.0e-7, 0.02, 1.0e-7):
        study.enqueue_trial({"train.lr": lr, "mix.mixup_alpha": 0.0})
    proc = subprocess.Popen([sys.executable, "-m", "podium.cli", "tune", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    # Killed in the middle of a trial that has reported an epoch, after two finished ones.
    while time.time() < deadline:
        trials = study.get_trials()
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if len(done) >= 2 and running:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the search never reached two finished trials and a running one")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = running[0]
    before = {t.number: (t.state, t.value, t.user_attrs["run"]) for t in done}
    records = {n: os.stat(f"{run}/fold0/{layout.TRAIN_STAGE}.done.json").st_mtime_ns
               for n, (state, _, run) in before.items() if state == TrialState.COMPLETE}

    out = ok(podium("tune", "--config", str(path), timeout=600))
    cfg, study = _study(path)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    # the trials finished before the kill are kept as they were, their folds not trained again
    assert {t.number: (t.state, t.value, t.user_attrs["run"]) for t in trials if t.number in before} == before
    assert {n: os.stat(f"{before[n][2]}/fold0/{layout.TRAIN_STAGE}.done.json").st_mtime_ns
            for n in records} == records
    for n in before:
        assert f"tune trial {n}:" not in out
    # the killed trial was marked failed at once (its process is gone; its heartbeat's grace, 120 s,
    # is not over) and its values tried again
    assert study.get_trials()[killed.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params

    # Pruning happened, never in the first half of a trial's epochs (tune.prune_after), and each
    # pruned trial's best score so far was below the median of the earlier complete trials' scores
    # at the epoch it stopped (MedianPruner's rule, recomputed from the study's record).
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert 1 in [t.number for t in pruned], [(t.number, t.state, t.params) for t in trials]  # lr 1e-7 after 0.02
    for t in pruned:
        step = max(t.intermediate_values)
        assert step >= 3 // 2
        earlier = [u.intermediate_values[step] for u in trials
                   if u.number < t.number and u.state == TrialState.COMPLETE and step in u.intermediate_values]
        assert earlier and max(t.intermediate_values.values()) < np.median(earlier)
        assert (tmp_path / "runs" / "t" / "tune" / os.path.basename(t.user_attrs["run"]) / "fold0"
                / layout.PRUNED_JSON).is_file()

    out = ok(podium("tune", "--config", str(path), "--step", "summary"))
    table = pd.read_csv(cfg.run_dir / layout.TUNE_CSV)
    assert len(table) == len(trials) and (table["state"] == "pruned").sum() == len(pruned)
    assert (cfg.run_dir / layout.TUNE_HISTORY_PNG).is_file()
    best = study.best_trial
    assert f"best: trial {best.number}" in out
    # best.yaml, retrained from scratch in its own experiment, scores what its trial scored
    best_yaml = cfg.run_dir / layout.TUNE_BEST_YAML
    saved = yaml.safe_load(best_yaml.read_text())
    assert saved["experiment"] == "t_best" and saved["train"]["lr"] == best.params["train.lr"]
    ok(podium("train", "--config", str(best_yaml), "--fold", "0"))
    bcfg = load_config(best_yaml)
    comp, _ = load_checked(bcfg)
    assert fold_score(bcfg, comp, 0) == pytest.approx(best.value, abs=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_j2_tune_runs_two_workers_on_one_study(tmp_path, competition):
    path = _config(tmp_path, competition, trials=4, pruner="none")
    out = subprocess.run(["make", "-j", "2", "-C", str(REPO), "tune", f"CONFIG={path}", "TRIALS=4"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cfg, study = _study(path)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # each worker stops once the study holds 4; one may have started a fifth by then
    assert 4 <= len(complete) <= 5 and len(complete) == len(trials)
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert (cfg.run_dir / layout.TUNE_BEST_YAML).is_file()
