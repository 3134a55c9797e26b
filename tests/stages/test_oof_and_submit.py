"""OOF assembly and the submission, on fold files written by hand: scores match scikit-learn,
every train row is counted once, and the submission takes sample_submission's exact shape."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from podium import artifacts
from podium.errors import PodiumError
from podium.runs import records
from podium.stages.folds import run_folds
from podium.stages.oof import run_oof
from podium.stages.submit import run_submit

from conftest import tiny_config, write_competition
from helpers import fake_fold_outputs


def test_oof_covers_every_row_once_and_scores_like_sklearn(tmp_path, capsys):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    cfg = tiny_config(root, tmp_path / "runs", metric="log_loss", postprocess={"enabled": False})
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    cv = run_oof(cfg)
    train = pd.read_csv(root / "train.csv")
    oof = pd.read_csv(cfg.run_dir / "oof.csv")
    assert list(oof["id"]) == list(train["id"])  # train.csv's order, each row once
    y = train["label"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
    p = oof[["a", "b", "c"]].to_numpy()
    assert cv["score"] == pytest.approx(log_loss(y, p))
    assert cv["other_metrics"]["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)))
    per_fold = [log_loss(y[oof["fold"] == k], p[oof["fold"] == k], labels=[0, 1, 2]) for k in range(3)]
    assert cv["fold_scores"] == pytest.approx(per_fold)
    assert cv["mean"] == pytest.approx(np.mean(per_fold)) and cv["std"] == pytest.approx(np.std(per_fold))
    assert "OOF" in capsys.readouterr().out


def test_oof_refuses_a_fold_with_missing_or_extra_rows(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    cfg = tiny_config(root, tmp_path / "runs")
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"], extra_oof_row=1)
    with pytest.raises(PodiumError, match="fold1/oof.csv: its ids are not exactly"):
        run_oof(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    path = cfg.run_dir / "fold1" / "oof.csv"
    df = pd.read_csv(path)
    pd.concat([df, df.iloc[[0]]]).to_csv(path, index=False)  # changed after training wrote it
    with pytest.raises(PodiumError, match="fold1/oof.csv changed after fold 1 finished training"):
        run_oof(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    (cfg.run_dir / "fold2" / "oof.csv").unlink()
    with pytest.raises(PodiumError, match="fold2/oof.csv is missing"):
        run_oof(cfg)


def test_label_submission_in_sample_order(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    sample = pd.read_csv(root / "sample_submission.csv")
    sample.iloc[::-1].to_csv(root / "sample_submission.csv", index=False)  # an order of its own
    cfg = tiny_config(root, tmp_path / "runs", submissions_dir=str(tmp_path / "subs"))
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    out = run_submit(cfg)
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["id", "label"]
    assert list(sub["id"]) == list(sample["id"])[::-1]
    mean = sum(pd.read_csv(cfg.run_dir / f"fold{k}" / "test.csv").set_index("id") for k in range(3)) / 3
    expected = mean.loc[sub["id"]].idxmax(axis=1).to_numpy()
    assert (sub["label"].to_numpy() == expected).all()


def test_probability_submission_takes_the_sample_column_order(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12, probability_sample=True)
    sample = pd.read_csv(root / "sample_submission.csv")[["id", "c", "a", "b"]]
    sample.to_csv(root / "sample_submission.csv", index=False)
    cfg = tiny_config(root, tmp_path / "runs", submissions_dir=str(tmp_path / "subs"))
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    sub = pd.read_csv(run_submit(cfg))
    assert list(sub.columns) == ["id", "c", "a", "b"]
    mean = sum(pd.read_csv(cfg.run_dir / f"fold{k}" / "test.csv").set_index("id") for k in range(3)) / 3
    assert np.allclose(sub.set_index("id")[["a", "b", "c"]].to_numpy(), mean.loc[sub["id"]].to_numpy())


def test_binary_probability_submission_for_auc(tmp_path):
    root, truth = write_competition(tmp_path / "c", n_train=60, n_test=12, classes=(0, 1), target="target")
    cfg = tiny_config(root, tmp_path / "runs", submissions_dir=str(tmp_path / "subs"), metric="roc_auc",
                      data={"task": "binary", "target": "target"})
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["target"])
    cv = run_oof(cfg)
    train = pd.read_csv(root / "train.csv")
    oof = pd.read_csv(cfg.run_dir / "oof.csv")
    assert cv["score"] == pytest.approx(roc_auc_score(train["target"], oof["target"]))
    sub = pd.read_csv(run_submit(cfg))
    assert list(sub.columns) == ["id", "target"] and sub["target"].between(0, 1).all()
    assert not set(sub["target"]) <= {0, 1}  # probabilities, not labels


def test_submission_with_unrecognised_columns_is_refused(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    pd.read_csv(root / "sample_submission.csv").assign(x=1).to_csv(root / "sample_submission.csv", index=False)
    cfg = tiny_config(root, tmp_path / "runs", submissions_dir=str(tmp_path / "subs"))
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(0), ["a", "b", "c"])
    with pytest.raises(PodiumError, match="sample_submission.csv"):
        run_submit(cfg)
    assert not (tmp_path / "subs").exists()


def test_up_to_date_records_follow_content(tmp_path):
    out = tmp_path / "x.csv"
    artifacts.write_text(out, "a\n1\n")
    records.mark_done(tmp_path, "s", {"in": "1"}, [out])
    assert records.is_up_to_date(tmp_path, "s", {"in": "1"})
    assert not records.is_up_to_date(tmp_path, "s", {"in": "2"})
    artifacts.write_text(out, "a\n2\n")
    assert not records.is_up_to_date(tmp_path, "s", {"in": "1"})
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
