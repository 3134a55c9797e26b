"""Runs made before the package was split into subpackages still count: their folds read as
current, their records as up to date, a change of config is named against their done-records,
and an interrupted fold resumes from its checkpoint (a fixture written by that older code)."""

import json
import shutil

import pandas as pd
import pytest

from podium.config import load_config
from podium.runs import layout
from podium.stages.current import data_fingerprint, load_checked

from conftest import REPO, ok, podium

FIXTURE = REPO / "tests" / "fixtures" / "run_before_subpackages"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    """A copy of the fixture (its configs use paths relative to it), as the working directory."""
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)
    return root


def test_a_finished_run_from_before_is_current(old_run):
    cfg = load_config("old.yaml")
    comp, csv_hash = load_checked(cfg)
    data_hash = data_fingerprint(cfg, comp, csv_hash)
    assert [layout.stale_reason(cfg, k, data_hash) for k in range(3)] == [None, None, None]
    before = json.loads((old_run / "runs" / "old" / "cv.json").read_text())
    submission = (old_run / "submissions" / "old.csv").read_bytes()

    assert "runs/old/cv.json is up to date" in ok(podium("oof", "--config", "old.yaml", cwd=old_run))
    assert "is up to date" in ok(podium("submit", "--config", "old.yaml", cwd=old_run))
    assert json.loads((old_run / "runs" / "old" / "cv.json").read_text()) == before
    assert (old_run / "submissions" / "old.csv").read_bytes() == submission
    assert "up to date" in ok(podium("train", "--config", "old.yaml", "--fold", "1", cwd=old_run))


def test_a_changed_key_is_named_against_a_record_from_before(old_run):
    cfg = load_config("old.yaml", ["train.lr=0.02"])
    comp, csv_hash = load_checked(cfg)
    why = layout.stale_reason(cfg, 2, data_fingerprint(cfg, comp, csv_hash))
    assert why is not None and "train.lr=0.01" in why and "train.lr=0.02" in why
    out = podium("oof", "--config", "old.yaml", "train.lr=0.02", cwd=old_run)
    assert out.returncode == 2 and "fold 0 was trained with train.lr=0.01" in out.stderr


@pytest.mark.slow
def test_a_fold_interrupted_before_resumes_from_its_checkpoint(old_run):
    fold = old_run / "runs" / "killed" / "fold0"
    saved = json.loads((fold / "checkpoint" / "epoch-0000" / "podium.json").read_text())
    out = ok(podium("train", "--config", "killed.yaml", "--fold", "0", cwd=old_run))
    assert "resuming after epoch 1" in out
    history = pd.read_csv(fold / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert history.loc[0, "train_loss"] == pytest.approx(saved["history"][0]["train_loss"], abs=0)
    # The interrupted run trains the same fold as the finished one: the same second epoch, bit for bit.
    finished = pd.read_csv(old_run / "runs" / "old" / "fold0" / "history.csv")
    assert history.loc[1, "train_loss"] == finished.loc[1, "train_loss"]
    assert (fold / "oof.csv").read_bytes() == (old_run / "runs" / "old" / "fold0" / "oof.csv").read_bytes()
