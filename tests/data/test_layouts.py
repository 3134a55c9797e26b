"""Real Kaggle layouts by config alone: each a small competition of its own (a few dozen images in
a temporary folder) taken through folds -> train -> oof -> submit, the submission checked
against its sample: columns, ids in order, and the kind of value (labels, probabilities, numbers,
tag strings). Bad input in these layouts is refused before training, naming the id."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from podium.cli import main

from conftest import ok, pattern_image, podium

TAGS = {0: "clear primary", 1: "cloudy", 2: "clear primary water"}  # Planet-style tag strings


def _images(folder, ids, kinds, rng, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, k in zip(ids, kinds, strict=True):
        cv2.imwrite(str(folder / f"{i}.{ext}"), pattern_image(int(k), rng))


def _layout(root, name: str, rng):
    """(config tree, sample submission) of one competition layout written under root."""
    n_train, n_test = 48, 12
    kinds = {s: rng.permutation(np.arange(n) % 3) for s, n in (("train", n_train), ("test", n_test))}
    ids = {s: [f"{s[:2]}{i:03d}" for i in range(len(kinds[s]))] for s in kinds}
    _images(root / "train", ids["train"], kinds["train"], rng)
    _images(root / "test", ids["test"], kinds["test"], rng)
    train = pd.DataFrame({"id": ids["train"]})
    sample = pd.DataFrame({"id": ids["test"]})
    data = {"dir": str(root), "train_images": "train/{id}.png", "test_images": "test/{id}.png"}
    if name == "pawpularity":  # a 1-100 score, RMSE
        train["Pawpularity"] = (kinds["train"] * 30 + rng.integers(1, 30, n_train)).clip(1, 100)
        sample["Pawpularity"] = 50.0
        tree = {"data": {**data, "task": "regression", "target": "Pawpularity"}, "metric": "rmse"}
    elif name == "aptos":  # ordinal grades scored by QWK: a regression cut into classes
        train["diagnosis"] = kinds["train"] + (rng.random(n_train) < 0.3)  # 0..3
        sample["diagnosis"] = 0
        tree = {"data": {**data, "task": "regression", "target": "diagnosis"}, "metric": "qwk"}
    elif name == "planet":  # tag strings in and out, no test.csv, mean F2 per image
        train["tags"] = [TAGS[k] for k in kinds["train"]]
        sample["tags"] = "haze primary"  # a tag never seen in train: fine in a sample submission
        data.pop("train_images")
        data.update(train_images="train/{image_name}.png", test_images="test/{image_name}.png", test_csv=None,
                    train_csv="train_v2.csv", id_column="image_name")
        train, sample = train.rename(columns={"id": "image_name"}), sample.rename(columns={"id": "image_name"})
        tree = {"data": {**data, "task": "multilabel", "target": "tags"},
                "folds": {"strategy": "multilabel_stratified"}, "metric": "f2_samples"}
    elif name == "plant_pathology":  # one-hot class columns, probabilities out, log loss
        classes = ["healthy", "multiple_diseases", "rust"]
        for j, c in enumerate(classes):
            train[c] = (kinds["train"] == j).astype(int)
            sample[c] = 1 / 3
        tree = {"data": {**data, "task": "multiclass", "target": classes}, "metric": "log_loss"}
    elif name == "label_columns":  # one 0/1 column per label, 0/1 labels out under macro F1
        for j, c in enumerate(["cloudy", "water"]):
            train[c] = (kinds["train"] == j + 1).astype(int)
            sample[c] = 0
        tree = {"data": {**data, "task": "multilabel", "target": ["cloudy", "water"]},
                "folds": {"strategy": "multilabel_stratified"}, "metric": "f1_macro"}
    else:  # cassava: class labels, no test.csv, the sample submission lists the test images
        train["label"] = kinds["train"]
        sample["label"] = 4
        tree = {"data": {**data, "target": "label", "test_csv": None}, "metric": "accuracy"}
    train_csv = tree["data"].get("train_csv", "train.csv")
    train.to_csv(root / train_csv, index=False)
    sample.to_csv(root / "sample_submission.csv", index=False)
    if tree["data"].get("test_csv", "test.csv"):
        sample[[sample.columns[0]]].to_csv(root / "test.csv", index=False)
    return tree, sample


def _config(tmp_path, name, tree):
    tree = {**tree, "runs_dir": str(tmp_path / "runs"), "submissions_dir": str(tmp_path / "subs"),
            "folds": {"n_splits": 2, **tree.get("folds", {})},
            "model": {"name": "test_efficientnet"},
            "train": {"epochs": 2, "batch_size": 8, "image_size": 16, "num_workers": 0, "lr": 0.01},
            "scheduler": {"warmup_epochs": 0}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pawpularity", "aptos", "planet", "plant_pathology", "label_columns", "cassava"])
def test_layout_end_to_end(tmp_path, name, capsys):
    """Training through `accelerate launch`; the other stages through the same CLI entry point,
    in this process (a process start each would double the test's time)."""
    tree, sample = _layout(tmp_path / "comp", name, np.random.default_rng(3))
    config = _config(tmp_path, name, tree)

    def stage(*args):
        assert main([*args, "--config", str(config)]) == 0, capsys.readouterr().err[-3000:]
        return capsys.readouterr().out

    stage("check")
    for fold in range(2):
        ok(podium("train", "--config", str(config), "--fold", str(fold)))
    cv_out = stage("oof")
    stage("submit")
    run = tmp_path / "runs" / name
    cv = json.loads((run / "cv.json").read_text())
    train = pd.read_csv(tmp_path / "comp" / tree["data"].get("train_csv", "train.csv"), dtype={sample.columns[0]: str})
    oof = pd.read_csv(run / "oof.csv", dtype={sample.columns[0]: str})
    assert list(oof.iloc[:, 0]) == list(train.iloc[:, 0]) and cv["rows"] == len(train)
    sub = pd.read_csv(tmp_path / "subs" / f"{name}.csv", dtype={sample.columns[0]: str})
    assert list(sub.columns) == list(sample.columns)
    assert list(sub.iloc[:, 0]) == list(sample.iloc[:, 0])  # the sample's ids, in its order
    assert not sub.isna().any().any()
    target = sub.columns[1]

    if name == "pawpularity":  # numbers in the target column; the OOF keeps the raw prediction
        assert sub[target].dtype.kind == "f" and "postprocess" not in cv
        assert list(oof.columns) == ["id", "fold", "Pawpularity"]
        assert oof["Pawpularity"].between(-50, 200).all() and oof["Pawpularity"].nunique() > 10
    elif name == "aptos":  # integer grades through the cut-points fitted on the OOF
        assert sub[target].dtype.kind == "i" and sub[target].between(0, 3).all()
        post = cv["postprocess"]
        assert post["kind"] == "cutpoints" and len(post["params"]) == 3
        assert {"score_without", "score_in_sample", "fold_scores_without"} <= set(post)
        assert "nested" in cv_out and "in-sample" in cv_out
        assert oof["diagnosis"].nunique() > 4  # raw regression outputs, not classes
        fitted = json.loads((run / "postprocess.json").read_text())
        assert fitted["kind"] == "cutpoints" and fitted["classes"] == [0, 1, 2, 3]
    elif name == "planet":  # space-separated labels seen in train, chosen by per-label thresholds
        labels = {t for row in TAGS.values() for t in row.split()}
        assert list(oof.columns) == ["image_name", "fold", *sorted(labels)]
        assert all(set(row.split()) <= labels and row.strip() for row in sub[target])
        assert cv["postprocess"]["kind"] == "thresholds" and len(cv["postprocess"]["params"]) == len(labels)
    elif name == "plant_pathology":  # softmax probabilities over the one-hot columns, temperature-scaled
        probs = sub[["healthy", "multiple_diseases", "rust"]].to_numpy()
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-4) and (probs > 0).all()
        assert cv["postprocess"]["kind"] == "temperature"
    elif name == "label_columns":  # 0/1 per label by the thresholds fitted on the OOF
        assert set(np.unique(sub[["cloudy", "water"]])) <= {0, 1}
        assert cv["postprocess"]["kind"] == "thresholds" and len(cv["postprocess"]["params"]) == 2
    else:  # class labels from the training classes
        assert set(sub[target]) <= {0, 1, 2}

    if name in ("aptos", "planet"):
        # the report shows the post-processing; the offline bundle applies it (and a regression
        # head's scale) exactly as make submit does, from a copy away from the repo
        stage("report")
        assert "Post-processing" in (run / "report.html").read_text()
        stage("bundle")
        away = tmp_path / "kernel"
        shutil.copytree(run / "bundle", away)
        out_file = tmp_path / "bundle_submission.csv"
        out = subprocess.run([sys.executable, "predict.py", "--data-dir", str(tmp_path / "comp"), "--out",
                              str(out_file)], cwd=away, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        pd.testing.assert_frame_equal(pd.read_csv(out_file, dtype={sample.columns[0]: str}), sub)


def _check_fails(capsys, config, tmp_path):
    code = main(["check", "--config", str(config)])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and "\n" not in err.strip()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))
    return err


def test_a_non_numeric_regression_target_names_its_id(tmp_path, capsys):
    tree, _ = _layout(tmp_path / "comp", "pawpularity", np.random.default_rng(0))
    train = pd.read_csv(tmp_path / "comp" / "train.csv")
    train["Pawpularity"] = train["Pawpularity"].astype(object)
    train.loc[5, "Pawpularity"] = "about 40"
    train.to_csv(tmp_path / "comp" / "train.csv", index=False)
    err = _check_fails(capsys, _config(tmp_path, "paw", tree), tmp_path)
    assert "'Pawpularity' must be numeric" in err and "'tr005'" in err


def test_a_one_hot_row_without_exactly_one_1_names_its_id(tmp_path, capsys):
    tree, _ = _layout(tmp_path / "comp", "plant_pathology", np.random.default_rng(0))
    train = pd.read_csv(tmp_path / "comp" / "train.csv")
    train.loc[7, ["healthy", "rust"]] = 1
    train.loc[9, ["healthy", "multiple_diseases", "rust"]] = 0
    train.to_csv(tmp_path / "comp" / "train.csv", index=False)
    err = _check_fails(capsys, _config(tmp_path, "pp", tree), tmp_path)
    assert "exactly one 1 per row" in err and "'tr007'" in err and "'tr009'" in err


def test_check_refuses_a_sample_submission_that_does_not_fit_the_task(tmp_path, capsys):
    """Before any training: a regression sample with two columns, a tag-string task whose sample has
    columns that are neither the target nor the labels."""
    tree, sample = _layout(tmp_path / "comp", "pawpularity", np.random.default_rng(0))
    sample.assign(extra=1).to_csv(tmp_path / "comp" / "sample_submission.csv", index=False)
    err = _check_fails(capsys, _config(tmp_path, "paw", tree), tmp_path)
    assert "sample_submission.csv" in err and "one column of values" in err

    tree, sample = _layout(tmp_path / "planet", "planet", np.random.default_rng(0))
    sample.assign(other="x").to_csv(tmp_path / "planet" / "sample_submission.csv", index=False)
    err = _check_fails(capsys, _config(tmp_path, "planet", tree), tmp_path)
    assert "sample_submission.csv" in err and "one column per label" in err


def test_check_says_what_the_submission_will_hold(tmp_path, capsys):
    for name, kind in (("planet", "tags"), ("aptos", "value"), ("plant_pathology", "probability")):
        tree, _ = _layout(tmp_path / name, name, np.random.default_rng(0))
        assert main(["check", "--config", str(_config(tmp_path, name, tree))]) == 0
        assert f"the submission holds {kind}s" in capsys.readouterr().out
