"""Every metric against scikit-learn called directly here (or numpy by hand), per task."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, fbeta_score, mean_absolute_error

from podium.evaluate.metrics import METRICS, score, score_all


def _multilabel(seed: int, n: int = 60, labels: int = 4):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.35).astype(int)
    y[:3] = 0  # rows without a label: the zero_division=0 cases of the per-row F scores
    probs = np.clip(0.35 * y + 0.65 * rng.random((n, labels)), 0, 1)
    probs[0] = 0.1  # ... one of them predicted empty too
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_f_scores_equal_sklearn(seed):
    y, probs = _multilabel(seed)
    hard = (probs >= 0.5).astype(int)
    assert score("f2_samples", y, probs, "multilabel") == pytest.approx(
        fbeta_score(y, hard, beta=2, average="samples", zero_division=0), abs=1e-12)
    assert score("f1_samples", y, probs, "multilabel") == pytest.approx(
        f1_score(y, hard, average="samples", zero_division=0), abs=1e-12)
    assert score("f1_micro", y, probs, "multilabel") == pytest.approx(
        f1_score(y, hard, average="micro", zero_division=0), abs=1e-12)
    # F2 by hand, row by row: 5 tp / (5 tp + 4 fn + fp), 0 for a row with nothing to count
    tp, fp, fn = (y & hard).sum(1), ((1 - y) & hard).sum(1), (y & (1 - hard)).sum(1)
    den = 5 * tp + 4 * fn + fp
    by_hand = np.where(den > 0, 5 * tp / np.maximum(den, 1), 0.0).mean()
    assert score("f2_samples", y, probs, "multilabel") == pytest.approx(by_hand, abs=1e-12)


def test_regression_errors_equal_numpy_and_sklearn():
    rng = np.random.default_rng(3)
    y = rng.normal(30, 10, 80)
    pred = y + rng.normal(0, 4, 80)
    assert score("rmse", y, pred[:, None], "regression") == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)), rel=1e-12)
    assert score("rmse", y, pred, "regression") == score("rmse", y, pred[:, None], "regression")
    assert score("mae", y, pred[:, None], "regression") == pytest.approx(mean_absolute_error(y, pred), rel=1e-12)
    assert score("mae", y, pred[:, None], "regression") == pytest.approx(np.abs(pred - y).mean(), rel=1e-12)


def _qwk_by_hand(a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> float:
    """Kaggle's quadratic weighted kappa: every integer rating from lo to hi, weights (i - j)^2."""
    k = hi - lo + 1
    observed = np.zeros((k, k))
    np.add.at(observed, (a - lo, b - lo), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / len(a)
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    return 1 - (w * observed).sum() / (w * expected).sum()


def test_regression_qwk_scores_the_rounded_clipped_prediction():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 120).astype(float)
    pred = y + rng.normal(0, 1.2, 120)  # some fall below 0 and above 4: clipped
    assert pred.min() < -0.5 and pred.max() > 4.5
    hard = np.clip(np.rint(pred), 0, 4).astype(int)
    assert score("qwk", y, pred[:, None], "regression") == pytest.approx(
        cohen_kappa_score(y.astype(int), hard, weights="quadratic"), abs=1e-12)
    assert score("qwk", y, pred, "regression") == score("qwk", y, pred[:, None], "regression")
    # A rating nobody gave or predicted (3) still counts in the weights, as in Kaggle's scorer.
    y2 = np.array([0, 1, 2, 4, 4, 2, 1, 0, 4, 4], dtype=float)
    p2 = np.array([0.2, 1.4, 1.6, 4.4, 5.0, 2.1, 0.6, -1.0, 4.2, 1.9])
    hard2 = np.clip(np.rint(p2), 0, 4).astype(int)
    assert 3 not in hard2 and 3 not in y2
    assert score("qwk", y2, p2, "regression") == pytest.approx(_qwk_by_hand(y2.astype(int), hard2, 0, 4), abs=1e-12)


def test_regression_qwk_is_nan_for_non_integer_targets_and_score_all_covers_regression():
    rng = np.random.default_rng(5)
    y = rng.normal(50, 20, 40)
    pred = y + rng.normal(0, 5, 40)
    assert np.isnan(score("qwk", y, pred, "regression"))
    out = score_all(y, pred[:, None], "regression")
    assert list(out) == ["qwk", "rmse", "mae"]
    assert np.isnan(out["qwk"]) and out["rmse"] == pytest.approx(np.sqrt(np.mean((pred - y) ** 2)))
    out = score_all(np.rint(y), pred[:, None], "regression")
    assert not np.isnan(out["qwk"])


def test_binary_column_and_vector_score_the_same():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 50)
    p = np.clip(0.4 * y + 0.6 * rng.random(50), 0, 1)
    names = [name for name, m in METRICS.items() if "binary" in m.tasks]
    assert set(names) == {"accuracy", "log_loss", "roc_auc", "f1_macro", "qwk"}
    for name in names:
        assert score(name, y, p[:, None], "binary") == score(name, y, p, "binary"), name
    assert score("qwk", y, p, "binary") == pytest.approx(
        cohen_kappa_score(y, (p >= 0.5).astype(int), weights="quadratic"))


def test_tasks_and_flags_of_the_table():
    for name in ("accuracy", "log_loss", "roc_auc", "f1_macro"):
        assert "regression" not in METRICS[name].tasks
        with pytest.raises(ValueError, match="regression"):
            score(name, np.zeros(4), np.zeros((4, 1)), "regression")
    assert {n for n, m in METRICS.items() if "regression" in m.tasks} == {"qwk", "rmse", "mae"}
    assert {n for n, m in METRICS.items() if m.probabilistic} == {"log_loss", "roc_auc"}
    assert not METRICS["rmse"].higher_is_better and not METRICS["mae"].higher_is_better
    for name in ("f1_micro", "f1_samples", "f2_samples"):
        assert METRICS[name].tasks == ("multilabel",) and METRICS[name].higher_is_better
    with pytest.raises(ValueError, match="unknown"):
        score("nope", np.zeros(2), np.zeros(2), "binary")


def test_multiclass_qwk_is_unchanged():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(4), 70)
    y = rng.integers(0, 4, 70)
    assert score("qwk", y, probs, "multiclass") == pytest.approx(
        cohen_kappa_score(y, probs.argmax(1), weights="quadratic"), abs=1e-12)


def test_roc_auc_of_a_two_class_multiclass_task_is_the_binary_auc_of_the_second_class():
    """Two classes as a multiclass task (ants and bees): scikit-learn's one-vs-rest refuses two
    columns; the AUC is the binary one of the second class's probability."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p1 = np.clip(y * 0.3 + rng.random(50) * 0.7, 0, 1)
    probs = np.c_[1 - p1, p1]
    assert score("roc_auc", y, probs, "multiclass") == pytest.approx(roc_auc_score(y, p1))
    assert np.isfinite(score_all(y, probs, "multiclass")["roc_auc"])
