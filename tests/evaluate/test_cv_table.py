"""The CV table make oof prints: the figures without TTA and without averaging beside the CV score,
and a hint when TTA made the CV worse (in the metric's own direction)."""

import pytest

from podium.evaluate.cv import format_cv


def _cv(metric, score, **extra):
    return {"metric": metric, "score": score, "fold_scores": [score, score], "mean": score, "std": 0.0,
            "other_metrics": {metric: score}, **extra}


@pytest.mark.parametrize("metric,score,without,worse", [
    ("accuracy", 0.90, 0.92, True), ("accuracy", 0.93, 0.92, False),
    ("log_loss", 0.30, 0.25, True), ("log_loss", 0.20, 0.25, False)])
def test_tta_is_reported_beside_and_a_loss_is_pointed_out(metric, score, without, worse):
    table = format_cv(_cv(metric, score, tta={"views": 8, "score_without": without, "gain": score - without}))
    line = f"with TTA over 8 views; without it (the plain view of the same models, scored the same way) {metric}"
    assert f"{line} {without:.5f}" in table
    assert ("TTA made the CV worse" in table) == worse


def test_averaging_is_reported_beside():
    table = format_cv(_cv("accuracy", 0.95, averaging={"score_without": 0.94, "gain": 0.01, "epochs": [[1, 2]]}))
    assert "the best epoch alone (same TTA, scored the same way) accuracy 0.94000" in table
    assert "TTA" not in table.split("best epochs")[0]


def test_folds_without_the_plain_view_get_no_tta_figure_rather_than_a_wrong_one(tmp_path):
    """Folds trained before the plain view was kept (TTA on, no oof_plain.csv): no `tta` entry, where
    falling back to oof.csv would report the TTA score as the score without it."""
    import numpy as np

    from podium.evaluate.cv import update_oof
    from podium.runs import layout
    from podium.stages.current import load_current

    from conftest import tiny_config, write_competition
    from helpers import fake_experiment

    root, _ = write_competition(tmp_path / "c", n_train=30, n_test=6)
    cfg = fake_experiment(tiny_config(root, tmp_path / "runs", predict={"tta_hflip": True}), seed=1)
    assert "tta" not in update_oof(cfg, load_current(cfg, [0, 1, 2]))[0]
    for k in range(3):  # now every fold has its plain view: scored
        oof = layout.fold_dir(cfg, k) / layout.OOF_CSV
        plain = oof.read_text().splitlines()
        plain[1:] = [",".join([r.split(",")[0]] + [str(1 / 3)] * 3) for r in plain[1:]]
        (layout.fold_dir(cfg, k) / layout.OOF_PLAIN_CSV).write_text("\n".join(plain) + "\n")
    cv, _ = update_oof(cfg, load_current(cfg, [0, 1, 2]))
    assert cv["tta"]["views"] == 2 and np.isfinite(cv["tta"]["score_without"])
