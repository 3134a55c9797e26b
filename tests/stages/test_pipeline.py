"""The pipeline end to end, through the CLI and `accelerate launch`, on CPU."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from podium import artifacts
from podium.config import load_config
from podium.runs.layout import stale_reason

from conftest import REPO, ok, pattern_image, podium


def _save_odd(arr: np.ndarray, path, mode: int):
    """The same picture in one of several modes and containers, always named .jpg."""
    img = Image.fromarray(arr)
    if mode == 0:
        img.save(path, format="JPEG", quality=95)  # grayscale JPEG
    elif mode == 1:
        img.convert("CMYK").save(path, format="JPEG", quality=95)
    elif mode == 2:
        img.convert("RGBA").save(path, format="PNG")  # a PNG behind a .jpg name
    elif mode == 3:
        img.convert("P").save(path, format="PNG")
    else:  # stored sideways with an EXIF tag that turns it upright
        sideways = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)
        exif = sideways.getexif()
        exif[0x0112] = 6
        sideways.save(path, format="JPEG", quality=95, exif=exif)


@pytest.mark.slow
def test_new_competition_by_config_alone(tmp_path):
    """Other column names, ids that carry their extension, odd image modes, and a sample
    submission with one probability column per class: a config is all it takes, and the
    submission scores well on the held-out labels."""
    rng = np.random.default_rng(1)
    comp = tmp_path / "leaves"
    classes = ["healthy", "rust", "scab"]
    truth = {}
    for split, n in (("images_train", 150), ("images_test", 45)):
        (comp / split).mkdir(parents=True)
        kinds = np.arange(n) % 3
        rng.shuffle(kinds)
        names = [f"{split[7:]}_{i:03d}.jpg" for i in range(n)]
        for i, (name, k) in enumerate(zip(names, kinds, strict=True)):
            _save_odd(pattern_image(int(k), rng, size=28), comp / split / name, i % 5)
        truth[split] = pd.DataFrame({"image_id": names, "disease": [classes[k] for k in kinds]})
    truth["images_train"].to_csv(comp / "train_labels.csv", index=False)
    truth["images_test"][["image_id"]].to_csv(comp / "test_files.csv", index=False)
    sample = truth["images_test"][["image_id"]].assign(scab=0.3, healthy=0.4, rust=0.3)  # not sorted
    sample.to_csv(comp / "sample.csv", index=False)

    config = tmp_path / "leaves_v1.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp_path / "runs"), "submissions_dir": str(tmp_path / "subs"),
        "data": {"dir": str(comp), "train_csv": "train_labels.csv", "test_csv": "test_files.csv",
                 "sample_submission": "sample.csv", "id_column": "image_id", "target": "disease",
                 "train_images": "images_train/{image_id}", "test_images": "images_test/{image_id}"},
        "folds": {"strategy": "stratified", "n_splits": 3},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 6, "batch_size": 16, "image_size": 24, "lr": 0.01, "num_workers": 0},
        "scheduler": {"warmup_epochs": 0},
        "augment": {"train": [{"name": "Resize"}], "valid": [{"name": "Resize"}]},
        "metric": "log_loss",
    }))
    for fold in range(3):
        ok(podium("train", "--config", str(config), "--fold", str(fold)))
    cv_out = ok(podium("oof", "--config", str(config)))
    assert "OOF" in cv_out
    ok(podium("submit", "--config", str(config)))

    sub = pd.read_csv(tmp_path / "subs" / "leaves_v1.csv")
    assert list(sub.columns) == ["image_id", "scab", "healthy", "rust"]
    assert list(sub["image_id"]) == list(sample["image_id"])
    assert np.allclose(sub[classes].sum(axis=1), 1.0, atol=1e-4)
    predicted = sub[classes].idxmax(axis=1)
    accuracy = (predicted.to_numpy() == truth["images_test"]["disease"].to_numpy()).mean()
    assert accuracy >= 0.85, accuracy

    cv = artifacts.read_json(tmp_path / "runs" / "leaves_v1" / "cv.json")
    assert cv["metric"] == "log_loss" and len(cv["fold_scores"]) == 3
    oof = pd.read_csv(tmp_path / "runs" / "leaves_v1" / "oof.csv")
    assert sorted(oof["image_id"]) == sorted(truth["images_train"]["image_id"])  # every row once


@pytest.mark.slow
def test_demo_pipeline_with_make(tmp_path):
    """`make demo` on the embedded demo competition, shrunk to a tiny model and two folds."""
    overrides = (f"runs_dir={tmp_path}/runs submissions_dir={tmp_path}/subs experiment=demo_test "
                 "model.name=test_efficientnet train.epochs=2 folds.n_splits=2 train.num_workers=0 train.lr=0.01")
    import subprocess
    out = subprocess.run(["make", "--no-print-directory", "demo", f"OVERRIDES={overrides}"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "runs" / "demo_test"
    for k in (0, 1):
        for name in ("history.csv", "model.safetensors", "oof.csv", "test.csv", "config.yaml"):
            assert (run / f"fold{k}" / name).is_file(), name
        history = pd.read_csv(run / f"fold{k}" / "history.csv")
        assert list(history["epoch"]) == [0, 1]
        assert {"lr", "train_loss", "valid_loss", "accuracy", "log_loss"} <= set(history.columns)
    train = pd.read_csv(REPO / "data" / "demo" / "train.csv")
    oof = pd.read_csv(run / "oof.csv")
    assert len(oof) == len(train) and set(oof["id"]) == set(train["id"])
    sub = pd.read_csv(tmp_path / "subs" / "demo_test.csv")
    sample = pd.read_csv(REPO / "data" / "demo" / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) and list(sub["id"]) == list(sample["id"])
    assert set(sub["label"]) <= set(range(10))
    cv = artifacts.read_json(run / "cv.json")
    assert 0.0 <= cv["score"] <= 1.0 and len(cv["fold_scores"]) == 2
    saved = yaml.safe_load((run / "fold0" / "config.yaml").read_text())
    prov = saved["provenance"]
    assert prov["seed"] == 42 and prov["folds_hash"] == artifacts.file_hash(run / "folds.csv")
    assert "git_commit" in prov and prov["packages"]["torch"]


@pytest.mark.slow
def test_two_cpu_processes_write_each_id_once(tmp_path, competition):
    """`make train NPROC=2` without a GPU: a real 2-process gloo group (asserted by the worker and
    recorded in config.yaml), and an OOF file with every id of the fold exactly once, although
    the fold's size is not a multiple of 2 x the prediction batch."""
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp_path / "runs"),
        "data": {"dir": str(competition)},
        "folds": {"n_splits": 4},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 1, "batch_size": 8, "image_size": 16, "num_workers": 1},
        "predict": {"batch_size": 5},
    }))
    import subprocess
    out = subprocess.run(["make", "--no-print-directory", "train", "FOLD=1", "NPROC=2", f"CONFIG={config}"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    fold_dir = tmp_path / "runs" / "two" / "fold1"
    prov = yaml.safe_load((fold_dir / "config.yaml").read_text())["provenance"]
    assert prov["num_processes"] == 2 and "MULTI_CPU" in prov["distributed_type"]
    folds = pd.read_csv(tmp_path / "runs" / "two" / "folds.csv", dtype=str)
    oof = pd.read_csv(fold_dir / "oof.csv", dtype={"id": str})
    expected = folds.loc[folds["fold"] == "1", "id"]
    assert len(expected) % 10 != 0
    assert oof["id"].is_unique and sorted(oof["id"]) == sorted(expected)
    test = pd.read_csv(fold_dir / "test.csv", dtype={"id": str})
    assert test["id"].is_unique and len(test) == 30
    # the lr is stepped once per optimizer update, not once per process: (90 - fold) rows over
    # 2 processes x 8 = 4 updates, and the logged lr is the schedule's 4th
    from podium.train.schedule import lr_curve
    history = pd.read_csv(fold_dir / "history.csv")
    assert np.isclose(history["lr"].iloc[0], lr_curve(load_config(config), 4)[3])


@pytest.mark.slow
def test_stage_is_skipped_when_up_to_date_and_redone_when_inputs_change(tmp_path, competition):
    """Also: SGD with gradient accumulation and clipping, and the lr schedule counted in updates."""
    config = tmp_path / "skip.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(competition)}, "folds": {"n_splits": 3},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 2, "batch_size": 8, "image_size": 16, "num_workers": 0, "optimizer": "sgd",
                  "grad_accum": 3, "clip_grad_norm": 1.0},
    }))
    ok(podium("train", "--config", str(config), "--fold", "0"))
    fold_dir = tmp_path / "runs" / "skip" / "fold0"
    # 60 training rows / batch 8 = 7 full batches; in groups of 3 that is 3 updates per epoch
    from podium.train.schedule import lr_curve
    lrs = lr_curve(load_config(config), 3)
    history = pd.read_csv(fold_dir / "history.csv")
    assert np.allclose(history["lr"], [lrs[2], lrs[5]])
    weights = artifacts.file_hash(fold_dir / "model.safetensors")
    again = ok(podium("train", "--config", str(config), "--fold", "0"))
    assert "up to date" in again and "epoch" not in again
    assert artifacts.file_hash(fold_dir / "model.safetensors") == weights

    cfg = load_config(config)
    from podium.stages.check import preflight
    _, data_hash = preflight(cfg)
    assert stale_reason(cfg, 0, data_hash) is None
    # a changed setting, a changed image, a changed output: each makes the fold stale, and says so
    changed = load_config(config, ["train.lr=0.5"])
    assert "train.lr=0.002; this config says train.lr=0.5" in stale_reason(changed, 0, data_hash)
    # where outputs go and how a run is logged do not make a fold stale
    assert stale_reason(load_config(config, ["submission.threshold=0.3", "log_with=null"]), 0, data_hash) is None
    img = competition / "train" / "train0003.png"
    shutil.copy(competition / "train" / "train0004.png", img)
    _, new_hash = preflight(cfg)
    assert new_hash != data_hash
    assert "other competition data" in stale_reason(cfg, 0, new_hash)
    (fold_dir / "oof.csv").write_text((fold_dir / "oof.csv").read_text() + "\n")
    assert "oof.csv changed after fold 0 finished" in stale_reason(cfg, 0, data_hash)


@pytest.mark.slow
def test_progressive_sizes_reach_persistent_workers_and_match_schedule(tmp_path, competition):
    """The size every training batch had, observed in the loop and logged in history.csv, with two
    persistent loader workers, equals the size schedule.csv announced for that epoch."""
    config = tmp_path / "prog.yaml"
    config.write_text(yaml.safe_dump({
        "runs_dir": str(tmp_path / "runs"), "data": {"dir": str(competition)}, "folds": {"n_splits": 3},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 4, "batch_size": 16, "image_size": 32, "num_workers": 2},
        "resize": {"start_scale": 0.5, "step": 8, "start_fraction": 0.0, "min_size": 8},
        "mix": {"off_epochs": 1, "prob": 1.0},
    }))
    ok(podium("schedule", "--config", str(config)))
    ok(podium("train", "--config", str(config), "--fold", "0"))
    run = tmp_path / "runs" / "prog"
    schedule = pd.read_csv(run / "schedule.csv")
    announced = schedule.groupby("epoch")["image_size"].agg(lambda s: s.unique().tolist())
    history = pd.read_csv(run / "fold0" / "history.csv")
    assert all(len(v) == 1 for v in announced)
    assert history["image_size"].tolist() == [v[0] for v in announced] == [16, 24, 24, 32]
    # each epoch validated at the size it trained at; the OOF (the best full-size epoch's) at full size
    assert history["valid_size"].tolist() == [16, 24, 24, 32]
    assert history["mix"].tolist() == ["mixup+cutmix"] * 3 + ["off"]
    assert (history["label_smoothing"] == 0.1).all() and (history["scheduler"] == "cosine_restarts").all()
    assert (run / "schedule.png").stat().st_size > 1000
    per_epoch = len(schedule) // 4
    # the lr logged at each epoch's end is the schedule's lr of that epoch's last update
    assert np.allclose(history["lr"], schedule["lr"].iloc[per_epoch - 1::per_epoch].to_numpy())
