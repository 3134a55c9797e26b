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
