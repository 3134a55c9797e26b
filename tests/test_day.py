"""Living with podium: report, leaderboard, and an offline bundle that reproduces the submission."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from podium.leaderboard import leaderboard

from conftest import podium, write_competition


def _ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A binary competition (scored by AUC, so the submission holds probabilities), two folds."""
    tmp = tmp_path_factory.mktemp("day")
    comp, _ = write_competition(tmp / "comp", n_train=60, n_test=20, classes=(0, 1), target="target")
    config = tmp / "bin_v1.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp / "runs"), "submissions_dir": str(tmp / "subs"),
        "data": {"dir": str(comp), "target": "target", "task": "binary", "cache": True},
        "folds": {"n_splits": 2}, "model": {"name": "test_efficientnet"},
        "train": {"epochs": 2, "batch_size": 8, "image_size": 16, "num_workers": 0},
        "predict": {"tta_hflip": True}, "metric": "roc_auc",
    }))
    for k in (0, 1):
        _ok(podium("train", "--config", str(config), "--fold", str(k)))
    _ok(podium("oof", "--config", str(config)))
    _ok(podium("submit", "--config", str(config)))
    return tmp, comp, config


def test_report_is_a_self_contained_page(trained):
    tmp, comp, config = trained
    _ok(podium("report", "--config", str(config)))
    run = tmp / "runs" / "bin_v1"
    page = (run / "report.html").read_text()
    sources = re.findall(r"src='([^']+)'", page)
    assert sources and all(not s.startswith(("/", "http")) for s in sources)  # relative paths only
    for src in sources:
        assert (run / src).is_file(), src
    names = " ".join(sources)
    for figure in ("fold_scores.png", "roc_pr.png", "reliability.png", "fold0_history.png", "fold1_history.png"):
        assert figure in names
    assert "roc_auc" in page and "git_commit" in page
    assert (run / "fold0" / "history.png").is_file()


def test_leaderboard_sorts_best_first(trained, tmp_path):
    tmp, _, _ = trained
    runs = tmp_path / "runs"
    for name, metric, score in (("a", "accuracy", 0.91), ("b", "accuracy", 0.95), ("c", "log_loss", 0.2),
                                ("d", "log_loss", 0.1)):
        (runs / name).mkdir(parents=True)
        (runs / name / "cv.json").write_text(
            f'{{"experiment": "{name}", "metric": "{metric}", "score": {score}, "mean": {score}, '
            f'"std": 0.01, "folds": 5, "fold_scores": []}}')
    table = leaderboard(runs)
    assert table["experiment"].tolist() == ["b", "a", "d", "c"]
    assert (table["folds_done"] == "0/5").all()
    out = _ok(podium("leaderboard", "--runs-dir", str(tmp / "runs")))
    assert "bin_v1" in out and "2/2" in out


def test_bundle_predicts_the_same_submission_away_from_the_repo(trained, tmp_path):
    tmp, comp, config = trained
    _ok(podium("bundle", "--config", str(config)))
    away = tmp_path / "kaggle_dataset"
    shutil.copytree(tmp / "runs" / "bin_v1" / "bundle", away)
    out_file = tmp_path / "submission.csv"
    out = subprocess.run([sys.executable, "predict.py", "--data-dir", str(comp), "--out", str(out_file)],
                         cwd=away, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ".whl" in out.stdout  # podium was imported from the bundled wheel, not the repo
    ours = pd.read_csv(out_file)
    reference = pd.read_csv(tmp / "subs" / "bin_v1.csv")
    assert list(ours.columns) == list(reference.columns) and list(ours["id"]) == list(reference["id"])
    # the same probabilities; the repo's path averages the folds' CSV files, hence float rounding
    np.testing.assert_allclose(ours["target"], reference["target"], rtol=0, atol=1e-6)
