"""Living with podium: report, leaderboard, and an offline bundle that reproduces the submission."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from podium.config import load_config
from podium.config.sections import ModelConfig
from podium.data.datasets import ImageDataset, Normalize
from podium.predict.kernel import _DecodeForSize
from podium.stages.leaderboard import leaderboard
from podium.train.models import create_model

from conftest import ok, podium, write_competition
from helpers import write_hub_cache


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A binary competition (scored by AUC, so the submission holds probabilities), two folds
    fine-tuned from timm's hub weights (read offline from a hub cache made here)."""
    tmp = tmp_path_factory.mktemp("day")
    torch.manual_seed(5)
    weights = create_model(ModelConfig(name="test_efficientnet"), 1000).state_dict()
    write_hub_cache(tmp / "hf", "timm/test_efficientnet.r160_in1k", weights)
    hub = {"HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1"}
    comp, _ = write_competition(tmp / "comp", n_train=60, n_test=20, classes=(0, 1), target="target")
    config = tmp / "bin_v1.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp / "runs"), "submissions_dir": str(tmp / "subs"),
        "data": {"dir": str(comp), "target": "target", "task": "binary", "cache": True},
        "folds": {"n_splits": 2}, "model": {"name": "test_efficientnet", "pretrained": True},
        # float32 throughout: the epoch scores are compared with a float32 forward pass below, and
        # `auto` precision would pick bf16 on a CPU that times it faster.
        "train": {"epochs": 2, "batch_size": 8, "image_size": 16, "num_workers": 0, "precision": "no",
                  "channels_last": "off"},
        # 16 views: the eight symmetries of the square at two sizes
        "predict": {"tta": ["hflip", "vflip", "transpose"], "tta_scales": [1.0, 1.25]}, "metric": "roc_auc",
    }))
    for k in (0, 1):
        assert "weights from the hub" in ok(podium("train", "--config", str(config), "--fold", str(k), env=hub))
    ok(podium("oof", "--config", str(config), env=hub))
    ok(podium("submit", "--config", str(config), env=hub))
    return tmp, comp, config


def _symmetries(x):
    """The eight symmetries of the square, enumerated independently: four rotations of x and of its mirror."""
    return [torch.rot90(y, k, dims=(-2, -1)) for y in (x, x.flip(-1)) for k in range(4)]


@pytest.mark.slow
def test_oof_is_the_saved_weights_with_tta_and_epoch_scores_are_without(trained):
    """Epoch scores (which pick the best epoch) skip TTA; oof.csv is the best weights averaged over the 16
    views, oof_plain.csv the plain view of the same pass; make oof scores both."""
    tmp, comp, config = trained
    cfg = load_config(config, [])
    fold_dir = tmp / "runs" / "bin_v1" / "fold0"
    oof = pd.read_csv(fold_dir / "oof.csv", dtype={"id": str}).set_index("id")["target"]
    oof_plain = pd.read_csv(fold_dir / "oof_plain.csv", dtype={"id": str}).set_index("id")["target"]
    assert list(oof_plain.index) == list(oof.index)
    train = pd.read_csv(comp / "train.csv", dtype={"id": str}).set_index("id").loc[oof.index]
    ds = ImageDataset([comp / "train" / f"{i}.png" for i in oof.index], None, cfg.augment.valid,
                      cfg.train.image_size, cfg.seed, "augment.valid", augment_seed=False,
                      cache=_DecodeForSize(cfg.train.image_size))
    model = create_model(cfg.model.model_copy(update={"pretrained": False}), 1).eval()  # the fold's weights below
    model.load_state_dict(load_file(str(fold_dir / "model.safetensors")))
    with torch.no_grad():
        x = Normalize(cfg.augment.mean, cfg.augment.std, "cpu")(torch.stack([ds[i][0] for i in range(len(ds))]))
        big = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
        views = [torch.sigmoid(model(v)).squeeze(1).numpy() for v in _symmetries(x) + _symmetries(big)]
    plain = views[0]
    np.testing.assert_allclose(oof.to_numpy(), np.mean(views, axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(oof_plain.to_numpy(), plain, rtol=0, atol=1e-5)
    history = pd.read_csv(fold_dir / "history.csv")
    best = history.loc[history["roc_auc"].idxmax()]
    assert best["roc_auc"] == pytest.approx(roc_auc_score(train["target"], plain), abs=1e-9)
    cv = json.loads((tmp / "runs" / "bin_v1" / "cv.json").read_text())
    plain_oof = pd.concat([pd.read_csv(tmp / "runs" / "bin_v1" / f"fold{k}" / "oof_plain.csv", dtype={"id": str})
                           for k in (0, 1)]).set_index("id")["target"]
    truth = pd.read_csv(comp / "train.csv", dtype={"id": str}).set_index("id").loc[plain_oof.index, "target"]
    assert cv["tta"]["views"] == 16
    assert cv["tta"]["score_without"] == pytest.approx(roc_auc_score(truth, plain_oof), abs=1e-12)
    assert cv["score"] == pytest.approx(cv["tta"]["score_without"] + cv["tta"]["gain"], abs=1e-12)


@pytest.mark.slow
def test_report_is_a_self_contained_page(trained):
    tmp, comp, config = trained
    ok(podium("report", "--config", str(config)))
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
    # the TTA weight fitted on the OOF (postprocess.tta_weight), the TTA mean and the plain view beside
    assert "With and without" in page and "TTA over 16 views weighted" in page
    assert "the TTA mean over 16 views" in page and "the plain view of the same models" in page
    assert (run / "fold0" / "history.png").is_file()


@pytest.mark.slow
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
    out = ok(podium("leaderboard", "--runs-dir", str(tmp / "runs")))
    assert "bin_v1" in out and "2/2" in out


@pytest.mark.slow
def test_bundle_predicts_the_same_submission_away_from_the_repo(trained, tmp_path):
    tmp, comp, config = trained
    ok(podium("bundle", "--config", str(config)))
    away = tmp_path / "kaggle_dataset"
    shutil.copytree(tmp / "runs" / "bin_v1" / "bundle", away)
    out_file = tmp_path / "submission.csv"
    # Offline with an empty hub cache: the bundle carries the fine-tuned weights, not the hub's.
    offline = {**os.environ, "HF_HOME": str(tmp_path / "no_hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "predict.py", "--data-dir", str(comp), "--out", str(out_file)],
                         cwd=away, capture_output=True, text=True, timeout=300, env=offline)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ".whl" in out.stdout  # podium was imported from the bundled wheel, not the repo
    ours = pd.read_csv(out_file)
    reference = pd.read_csv(tmp / "subs" / "bin_v1.csv")
    assert list(ours.columns) == list(reference.columns) and list(ours["id"]) == list(reference["id"])
    # the same probabilities; the repo's path averages the folds' CSV files, hence float rounding
    np.testing.assert_allclose(ours["target"], reference["target"], rtol=0, atol=1e-6)
