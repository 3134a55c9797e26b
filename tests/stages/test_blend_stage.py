"""make blend: finished experiments joined into a run of their own, scored honestly, refused when
they are not the same competition or not current; listed by make leaderboard, shown by make
report, shipped whole by make bundle."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from podium import artifacts
from podium.errors import PodiumError
from podium.runs import layout
from podium.runs.finished import read_finished
from podium.stages.blend import run_blend
from podium.stages.current import check_blend
from podium.stages.leaderboard import leaderboard
from podium.stages.report import run_report

from conftest import podium, tiny_config, write_competition
from helpers import fake_experiment


@pytest.fixture
def two(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=60, n_test=12)
    members = [fake_experiment(tiny_config(root, tmp_path / "runs", experiment=f"s{k}", seed=k, metric="log_loss",
                                           submissions_dir=str(tmp_path / "subs")), seed=k)
               for k in range(2)]
    return tmp_path, members


def test_blend_of_two_runs_has_the_keys_of_an_experiment_and_scores_nested(two, capsys):
    tmp_path, members = two
    cv = run_blend(tmp_path / "runs", ["s0", "s1"], "both", "weights", str(tmp_path / "subs"))
    run = tmp_path / "runs" / "both"
    assert {"score", "fold_scores", "mean", "std", "folds", "rows", "other_metrics", "metric"} <= set(cv)
    assert json.loads((run / "cv.json").read_text()) == cv
    blended = cv["blend"]
    assert blended["members"] == ["s0", "s1"] and np.isclose(sum(blended["weights"]), 1)
    # nested (weights fitted without the rows scored) is never better than in-sample, log loss lower-better
    assert blended["score_without_postprocess"] >= blended["score_in_sample"] - 1e-12
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    train = pd.read_csv(tmp_path / "c" / "train.csv", dtype={"id": str})
    assert list(oof["id"]) == list(train["id"])  # every train row once, in train.csv's order
    sub = pd.read_csv(tmp_path / "subs" / "both.csv")
    sample = pd.read_csv(tmp_path / "c" / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) and list(sub["id"]) == list(sample["id"])
    assert "blend of 2" in leaderboard(tmp_path / "runs").set_index("experiment").loc["both", "folds_done"]
    assert "the members' CV log_loss" in capsys.readouterr().out
    run_report(read_finished(tmp_path / "runs", "both").cfg)
    page = (run / "report.html").read_text()
    assert "Blend (weights)" in page and "s0" in page and "s1" in page


def test_mean_blend_test_predictions_are_the_members_mean(two):
    tmp_path, members = two
    run_blend(tmp_path / "runs", ["s0", "s1"], "avg", "mean", str(tmp_path / "subs"))
    got = read_finished(tmp_path / "runs", "avg").test
    parts = [read_finished(tmp_path / "runs", m).test for m in ("s0", "s1")]
    np.testing.assert_allclose(got, (parts[0] + parts[1]) / 2, rtol=1e-12)


def test_blend_refuses_other_competitions_stale_members_and_goes_stale_itself(two):
    tmp_path, members = two
    other, _ = write_competition(tmp_path / "other", n_train=45, n_test=12)
    fake_experiment(tiny_config(other, tmp_path / "runs", experiment="o", metric="log_loss"), seed=3)
    with pytest.raises(PodiumError, match="blend members s0 and o: the training ids differ"):
        run_blend(tmp_path / "runs", ["s0", "o"], "x")
    with pytest.raises(PodiumError, match="METHOD=rank: .*roc_auc"):
        run_blend(tmp_path / "runs", ["s0", "s1"], "x", "rank")
    with pytest.raises(PodiumError, match="runs/nobody is neither"):
        run_blend(tmp_path / "runs", ["s0", "nobody"], "x")

    run_blend(tmp_path / "runs", ["s0", "s1"], "both", "mean", str(tmp_path / "subs"))
    check_blend(tmp_path / "runs", "both")
    (layout.fold_dir(members[1], 2) / "train.done.json").unlink()  # s1's fold 2 is being retrained
    with pytest.raises(PodiumError, match="fold 2 did not finish training"):
        check_blend(tmp_path / "runs", "both")
    fake_experiment(members[1], seed=7)  # s1 retrained: other predictions than the blend was made from
    with pytest.raises(PodiumError, match="blend both is stale: member\\(s\\) s1 changed since"):
        check_blend(tmp_path / "runs", "both")
    with pytest.raises(PodiumError, match="blend both is stale"):
        run_report(read_finished(tmp_path / "runs", "both").cfg)


@pytest.mark.slow
def test_bundle_of_a_blend_predicts_with_every_member(tmp_path):
    root, _ = write_competition(tmp_path / "c", n_train=48, n_test=12)
    for k in range(2):
        cfg = tiny_config(root, tmp_path / "runs", experiment=f"m{k}", seed=k, folds={"n_splits": 2},
                          metric="log_loss", submissions_dir=str(tmp_path / "subs"))
        tree = cfg.model_dump(mode="json")
        tree.pop("experiment")
        config = tmp_path / f"m{k}.yaml"
        config.write_text(yaml.safe_dump(tree))
        for fold in range(2):
            out = podium("train", "--config", str(config), "--fold", str(fold))
            assert out.returncode == 0, out.stderr[-3000:]
    out = podium("blend", "--config", str(config), "--exps", "m0", "m1", "--name", "mix")
    assert out.returncode == 0, out.stderr[-3000:]
    out = podium("bundle", "--config", str(config), "--name", "mix")
    assert out.returncode == 0, out.stderr[-3000:]
    away = tmp_path / "kernel"
    shutil.copytree(tmp_path / "runs" / "mix" / "bundle", away)
    got = tmp_path / "kernel.csv"
    run = subprocess.run([sys.executable, "predict.py", "--data-dir", str(root), "--out", str(got)], cwd=away,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = pd.read_csv(tmp_path / "subs" / "mix.csv")
    pd.testing.assert_frame_equal(pd.read_csv(got), expected, rtol=1e-5)
    assert sorted(p.name for p in (away / "members").iterdir()) == ["m0", "m1"]
    assert artifacts.read_json(away / "blend.json")["members"] == ["m0", "m1"]
