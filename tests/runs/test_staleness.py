"""One source of truth for a run: a fold is read only while its done-record matches the config
and data a stage runs with; a retrain leaves nothing stale behind; partial submissions say so;
the training worker reruns from its file."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from podium.config import config_from_dict, load_config
from podium.errors import PodiumError
from podium.runs import layout
from podium.stages.current import data_fingerprint, load_checked
from podium.stages.folds import run_folds
from podium.stages.oof import run_oof
from podium.stages.submit import run_submit

from conftest import REPO, podium, tiny_config, write_competition
from helpers import fake_fold_outputs


def _changed(cfg, **sections):
    tree = cfg.model_dump(mode="json")
    for section, values in sections.items():
        if isinstance(values, dict):
            tree[section].update(values)
        else:
            tree[section] = values
    return config_from_dict(tree)


@pytest.fixture
def faked(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    cfg = tiny_config(root, tmp_path / "runs", submissions_dir=str(tmp_path / "subs"))
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    return cfg


def test_oof_submit_and_bundle_refuse_folds_trained_under_another_config(faked):
    from podium.stages.bundle import run_bundle
    from podium.stages.report import run_report

    bigger = _changed(faked, train={"epochs": 12}, model={"name": "resnet18"})
    expected = ("fold 0 was trained with model.name=test_efficientnet, train.epochs=1; "
                "this config says model.name=resnet18, train.epochs=12: retrain it (make train FOLD=0)")
    for stage in (run_oof, run_submit, run_bundle, run_report):
        with pytest.raises(PodiumError) as info:
            stage(bigger)
        assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (faked.run_dir / "oof.csv").exists() and not (faked.run_dir / "bundle").exists()
    assert not list(faked.run_dir.parent.parent.glob("subs/*.csv"))

    # the case: fewer folds asked for than were trained
    with pytest.raises(PodiumError, match="fold 0 was trained with folds.n_splits=3; this config says "
                                          "folds.n_splits=2"):
        run_submit(_changed(faked, folds={"n_splits": 2}))
    # what only changes the submission's format or where outputs go is not a reason to retrain
    run_submit(_changed(faked, submission={"kind": "label", "threshold": 0.3}, log_with=None))
    run_oof(faked)


def test_a_fold_without_its_done_record_is_not_read(faked):
    (faked.run_dir / "fold1" / "train.done.json").unlink()
    with pytest.raises(PodiumError, match="fold 1 did not finish training .* run make train FOLD=1"):
        run_oof(faked)


def test_partial_submission_says_which_folds_and_is_named_for_them(faked, capsys):
    (faked.run_dir / "fold2" / "train.done.json").unlink()  # fold 2 still training
    with pytest.raises(PodiumError, match="fold 2"):
        run_submit(faked)
    out = run_submit(faked, [0, 1])
    assert out.name == "t.folds-0-1.csv"
    assert "folds 0, 1 of 3" in capsys.readouterr().out
    sub = pd.read_csv(out)
    mean = sum(pd.read_csv(faked.run_dir / f"fold{k}" / "test.csv").set_index("id") for k in (0, 1)) / 2
    assert (sub["label"].to_numpy() == mean.loc[sub["id"]].idxmax(axis=1).to_numpy()).all()
    assert not (out.parent / "t.csv").exists()  # the full submission's name is not taken


def test_predictions_module_does_not_import_the_training_loop():
    code = ("import sys, podium.predict.kernel; bad = [m for m in ('podium.train.loop', 'accelerate', 'podium.stages') "
            "if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_killed_retrain_leaves_nothing_current_and_the_worker_reruns_from_its_file(tmp_path):
    """A fold trained for 1 epoch, retrained for 6 and killed after the first: no predictions
    remain that oof would accept. The killed run's worker.json, run by hand, trains the fold."""
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(root)}, "folds": {"n_splits": 3},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 1, "batch_size": 8, "image_size": 16, "num_workers": 0},
    }))
    out = podium("train", "--config", str(config), "--fold", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    fold_dir = tmp_path / "runs" / "exp" / "fold0"
    assert (fold_dir / "oof.csv").is_file()

    proc = subprocess.Popen([sys.executable, "-m", "podium.cli", "train", "--config", str(config), "--fold", "0",
                             "train.epochs=6"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while not (fold_dir / "checkpoint" / "epoch-0000").is_dir():  # one epoch of the retrain done
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    for name in ("oof.csv", "test.csv", "model.safetensors", "train.done.json"):
        assert not (fold_dir / name).exists(), name
    for overrides in ([], ["train.epochs=6"]):
        cfg = load_config(config, overrides)
        comp, csv_hash = load_checked(cfg)
        assert "fold 0 did not finish training" in layout.stale_reason(cfg, 0, data_fingerprint(cfg, comp, csv_hash))
        with pytest.raises(PodiumError, match="fold 0 did not finish training"):
            run_oof(cfg)

    # The worker's inputs are a file: the same run again, by hand, in one process.
    job = yaml.safe_load((fold_dir / "worker.json").read_text())
    assert job["fold"] == 0 and job["processes"] == 1 and job["config"]["train"]["epochs"] == 6
    rerun = subprocess.run([sys.executable, "-m", "podium.cli", "train-worker", str(fold_dir / "worker.json")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    cfg = load_config(config, ["train.epochs=6"])
    comp, csv_hash = load_checked(cfg)
    assert layout.stale_reason(cfg, 0, data_fingerprint(cfg, comp, csv_hash)) is None
    assert len(pd.read_csv(fold_dir / "history.csv")) == 6
