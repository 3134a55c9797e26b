"""Distillation and pseudo-labels: a student's training targets are the configured mix of the
truth and its teacher's out-of-fold predictions; pseudo-labelled test images reach the training
batches and never the validation rows, oof.csv or a score; a changed teacher makes the student
stale. Experiments on the same images share one decoded-image cache."""

import numpy as np
import pandas as pd
import pytest

from podium import artifacts
from podium.config import config_from_dict
from podium.errors import PodiumError
from podium.runs import layout
from podium.stages.check import preflight
from podium.stages.current import load_checked, teacher_digest
from podium.stages.folds import run_folds
from podium.stages.oof import run_oof
from podium.train.loaders import build_loaders
from podium.train.teachers import distilled, pseudo_labels, soft_truth

from conftest import podium, tiny_config, write_competition, write_config
from helpers import fake_fold_outputs

CLASSES = ["a", "b", "c"]


def test_soft_truth_distilled_and_pseudo_labels_by_hand():
    y = np.array([2, 0])
    truth = soft_truth(y, "multiclass", 3)
    assert truth.tolist() == [[0, 0, 1], [1, 0, 0]]
    teacher = np.array([[0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    np.testing.assert_allclose(distilled(truth, teacher, 0.25), 0.75 * truth + 0.25 * teacher, rtol=1e-6)
    np.testing.assert_allclose(distilled(truth, teacher, 0.25).sum(axis=1), 1, rtol=1e-6)

    test = np.array([[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.01, 0.01, 0.98]])
    keep, hard = pseudo_labels(test, "multiclass", 0.9)
    assert keep.tolist() == [True, False, True] and hard.tolist() == [[1, 0, 0], [0, 0, 1]]
    keep, soft = pseudo_labels(test, "multiclass", None)
    assert keep.all() and np.allclose(soft, test)
    multilabel = np.array([[0.97, 0.02], [0.97, 0.5], [0.05, 0.99]])
    keep, hard = pseudo_labels(multilabel, "multilabel", 0.9)  # every label sure, or the row is left out
    assert keep.tolist() == [True, False, True] and hard.tolist() == [[1, 0], [0, 1]]
    keep, values = pseudo_labels(np.array([[3.5], [10.0]]), "regression", 0.9)
    assert keep.all() and values.tolist() == [3.5, 10.0]


@pytest.fixture
def teacher(tmp_path):
    """A finished teacher experiment 'teach' (fold files written as training writes them) and the
    competition it was trained on."""
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=15)
    cfg = tiny_config(root, tmp_path / "runs", experiment="teach")
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(1), CLASSES)
    artifacts.write_yaml(layout.fold_dir(cfg, 0) / layout.CONFIG_YAML, cfg.model_dump(mode="json"))
    run_oof(cfg)
    return cfg


def _student(teacher_cfg, **sections):
    tree = teacher_cfg.model_dump(mode="json")
    tree["experiment"] = "student"
    for key, value in sections.items():
        tree[key] = value
    return config_from_dict(tree)


def test_distilled_targets_are_the_configured_mix_of_truth_and_teacher_oof(teacher):
    student = _student(teacher, distill={"teacher": "teach", "weight": 0.3})
    comp, data_hash = preflight(student)
    run_folds(student, comp)
    data = build_loaders(student, comp, 0, data_hash)
    oof = pd.read_csv(teacher.run_dir / "oof.csv", dtype={"id": str}).set_index("id")
    ids = data.train_df["id"]
    truth = np.eye(3)[data.train_df["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()]
    expected = 0.7 * truth + 0.3 * oof.loc[ids, CLASSES].to_numpy()  # each row's OUT-OF-FOLD prediction
    np.testing.assert_allclose(data.train_loader.dataset.targets, expected, rtol=1e-6)
    # validation keeps the true labels: scores and the OOF never see the teacher
    assert data.valid_loader.dataset.targets.dtype.kind == "i"
    assert set(ids).isdisjoint(data.valid_df["id"]) and data.pseudo_rows == 0


def test_pseudo_labelled_rows_reach_training_batches_only(teacher):
    student = _student(teacher, pseudo={"teacher": "teach", "threshold": None})
    comp, data_hash = preflight(student)
    run_folds(student, comp)
    data = build_loaders(student, comp, 0, data_hash)
    n_fold = len(comp.train) - len(data.valid_df)
    assert data.pseudo_rows == len(comp.test) == 15 and len(data.train_df) == n_fold + 15
    assert list(data.train_df["path"][n_fold:]) == list(comp.test["path"])
    seen = np.concatenate([idx.numpy() for _, _, _, idx in data.train_loader])
    assert (seen >= n_fold).any()  # pseudo-labelled test images in the training batches
    assert set(data.valid_df["id"]).isdisjoint(comp.test["id"])
    assert len(data.valid_loader.dataset) == len(data.valid_df)


def test_a_teacher_of_another_competition_or_unfinished_is_refused(teacher, tmp_path):
    other, _ = write_competition(tmp_path / "other", n_train=45, n_test=15, seed=5)
    cfg = _student(teacher, data={**teacher.model_dump(mode="json")["data"], "dir": str(other)},
                   distill={"teacher": "teach", "weight": 0.5})
    comp, _ = load_checked(cfg)
    with pytest.raises(PodiumError, match="teacher teach and this experiment: the training ids differ"):
        teacher_digest(cfg, comp)
    comp, _ = load_checked(teacher)
    with pytest.raises(PodiumError, match="runs/nobody is neither a trained experiment"):
        teacher_digest(_student(teacher, pseudo={"teacher": "nobody"}), comp)
    (teacher.run_dir / "fold1" / "train.done.json").unlink()
    with pytest.raises(PodiumError, match="fold 1 did not finish training"):
        teacher_digest(_student(teacher, distill={"teacher": "teach"}), comp)


@pytest.mark.slow
def test_student_trains_never_scores_pseudo_rows_and_goes_stale_with_its_teacher(teacher, tmp_path):
    student = _student(teacher, pseudo={"teacher": "teach", "threshold": None}, distill={"teacher": "teach"})
    config = write_config(student, tmp_path / "student.yaml")
    out = podium("train", "--config", str(config), "--fold", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "of them 15 pseudo-labelled test images" in out.stdout
    fold0 = tmp_path / "runs" / "student" / "fold0"
    oof = pd.read_csv(fold0 / "oof.csv", dtype={"id": str})
    folds = pd.read_csv(tmp_path / "runs" / "student" / "folds.csv", dtype={"id": str})
    assert set(oof["id"]) == set(folds.loc[folds["fold"] == 0, "id"])  # no test image in the OOF
    assert "teachers" in artifacts.read_json(fold0 / "train.done.json")["inputs"]

    # the teacher's predictions change: the student's fold is no longer current
    fake_fold_outputs(teacher, np.random.default_rng(2), CLASSES)
    run_oof(teacher)
    student = student.model_copy(update={"experiment": "student"})
    comp, csv_hash = load_checked(student)
    from podium.stages.current import data_fingerprint

    why = layout.stale_reason(student, 0, data_fingerprint(student, comp, csv_hash), teacher_digest(student, comp))
    assert why.startswith("fold 0 was trained on other predictions of its teacher (teach)")


def test_experiments_on_the_same_images_share_one_decode_cache(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=30, n_test=6)
    first = tiny_config(root, tmp_path / "runs", experiment="a", data={"cache": True})
    preflight(first)
    cache = tmp_path / "runs" / ".cache" / "images"
    bins = list(cache.glob("*.bin"))
    assert len(bins) == 1
    stamp = bins[0].stat().st_mtime_ns
    second = tiny_config(root, tmp_path / "runs", experiment="a_seed1", seed=1, data={"cache": True})
    preflight(second)  # another experiment (seed) on the same images: nothing decoded again
    assert list(cache.glob("*.bin")) == bins and bins[0].stat().st_mtime_ns == stamp
    bigger = tiny_config(root, tmp_path / "runs", experiment="b", data={"cache": True}, train={"image_size": 24})
    preflight(bigger)  # another size is another cache, and the first one stays
    assert len(list(cache.glob("*.bin"))) == 2 and bins[0].exists()
