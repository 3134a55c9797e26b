"""Blending members' predictions: fitted weights against brute force, rank mean against scipy, nested honesty."""

import itertools
import json

import numpy as np
import pytest
from scipy.stats import rankdata

from podium.evaluate import ensemble as bl
from podium.evaluate.metrics import higher_is_better, score


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _members(task: str, n_members: int, n: int, seed: int, signal: float = 1.0):
    """y and n_members noisy predictions of it; member m has noise growing with m (some help, some hurt)."""
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        y = rng.integers(0, 3, n)
        truth = 2.0 * np.eye(3)[y]
        members = [_softmax(signal * truth + rng.normal(0, 0.8 + 0.3 * m, (n, 3))) for m in range(n_members)]
    elif task in ("binary", "multilabel"):
        shape = (n, 1) if task == "binary" else (n, 3)
        y = rng.integers(0, 2, shape)
        logit = signal * (2 * y - 1)
        members = [1 / (1 + np.exp(-(logit + rng.normal(0, 1 + 0.4 * m, shape)))) for m in range(n_members)]
        y = y[:, 0] if task == "binary" else y
    else:
        y = rng.normal(0, 1, n)
        members = [(signal * y + rng.normal(0, 0.5 + 0.3 * m, n))[:, None] for m in range(n_members)]
    return y, members


def _brute_force(members, y, metric, task, steps):
    """Every weight vector on the 1/steps grid (itertools over all count vectors, kept where they sum to steps),
    with its better-is-larger score."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    out = []
    for counts in itertools.product(range(steps + 1), repeat=len(members)):
        if sum(counts) != steps:
            continue
        w = np.array(counts) / steps
        s = score(metric, y, sum(wi * p for wi, p in zip(w, members, strict=True)), task)
        out.append((w, -np.inf if np.isnan(s) else sign * s))
    return out


def _signed(metric, value):
    return value if higher_is_better(metric) else -value


def _check_simplex(w, n_members, steps):
    assert w.shape == (n_members,)
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w * steps, np.rint(w * steps), atol=1e-9)  # on the 1/steps grid


# --- weights: exhaustive regime ------------------------------------------------------------------


@pytest.mark.parametrize("task,metric", [("multiclass", "log_loss"), ("multiclass", "accuracy"),
                                         ("binary", "roc_auc"), ("binary", "log_loss"), ("regression", "rmse"),
                                         ("multilabel", "f1_macro")])
def test_weights_reach_the_brute_force_optimum(task, metric):
    y, members = _members(task, 3, 60, seed=1)
    steps = 20
    assert bl.grid_size(3, steps) == 231 <= bl.MAX_GRID  # exhaustive regime
    w = bl.fit_weights(members, y, metric, task, steps=steps)
    _check_simplex(w, 3, steps)
    grid = _brute_force(members, y, metric, task, steps)
    assert len(grid) == bl.grid_size(3, steps)
    best = max(s for _, s in grid)
    got = _signed(metric, score(metric, y, bl.blend(members, w, "weights"), task))
    assert got == pytest.approx(best, abs=1e-9)
    # ties go to the weights closest to the plain mean
    tied = [v for v, s in grid if s >= best - 1e-9]
    closest = min(float(np.sum((v - 1 / 3) ** 2)) for v in tied)
    assert float(np.sum((w - 1 / 3) ** 2)) == pytest.approx(closest, abs=1e-9)


def test_ties_prefer_the_plain_mean():
    # identical members: every weight vector scores the same; the grid point closest to (1/3, 1/3, 1/3)
    y, members = _members("regression", 1, 30, seed=2)
    members = members * 3
    w = bl.fit_weights(members, y, "rmse", "regression", steps=20)
    assert sorted(np.rint(w * 20).astype(int).tolist()) == [6, 7, 7]
    w = bl.fit_weights(members, y, "rmse", "regression", steps=3)
    np.testing.assert_allclose(w, [1 / 3] * 3)


# --- weights: hill-climbing regime ---------------------------------------------------------------


@pytest.mark.parametrize("task,metric", [("regression", "rmse"), ("binary", "log_loss"), ("binary", "roc_auc")])
def test_hill_climbing_between_best_member_and_brute_force(task, metric, monkeypatch):
    y, members = _members(task, 6, 60, seed=3)
    member_best = max(_signed(metric, score(metric, y, p, task)) for p in members)

    # at the default steps, 6 members are past MAX_GRID: hill climbing
    assert bl.grid_size(6, bl.STEPS) > bl.MAX_GRID
    report, _ = bl.score_blend(members, y, np.arange(60) % 3, metric, task, "weights")
    assert report["search"] == "hill_climbing"
    w = np.asarray(report["weights"])
    _check_simplex(w, 6, bl.STEPS)
    assert _signed(metric, report["score_in_sample"]) >= member_best - 1e-12

    # on a coarse grid the brute force is affordable: force hill climbing there and bound it from both sides
    monkeypatch.setattr(bl, "MAX_GRID", 0)
    steps = 5
    w = bl.fit_weights(members, y, metric, task, steps=steps)
    _check_simplex(w, 6, steps)
    got = _signed(metric, score(metric, y, bl.blend(members, w, "weights"), task))
    best = max(s for _, s in _brute_force(members, y, metric, task, steps))
    assert member_best - 1e-12 <= got <= best + 1e-12


def test_rescale_keeps_the_grid():
    assert bl._rescale((1, 2), 20) == (7, 13)
    assert bl._rescale((1, 1, 1), 20) == (7, 7, 6)
    assert bl._rescale((0, 3, 1), 20) == (0, 15, 5)
    assert sum(bl._rescale((3, 1, 2, 1), 20)) == 20


# --- honest scoring ------------------------------------------------------------------------------


@pytest.mark.parametrize("task,metric", [("regression", "rmse"), ("binary", "log_loss"), ("binary", "accuracy")])
def test_nested_score_is_not_better_than_in_sample_when_overfitting(task, metric):
    # many members that are noise around a weak signal, few rows: the in-sample weights fit the noise
    y, members = _members(task, 8, 40, seed=4, signal=0.3)
    fold = np.arange(40) % 4
    report, oof = bl.score_blend(members, y, fold, metric, task, "weights")
    assert _signed(metric, report["score"]) < _signed(metric, report["score_in_sample"])
    assert report["score"] == score(metric, y, oof, task)
    assert len(report["fold_scores"]) == 4 and report["folds"] == [0, 1, 2, 3]


def test_a_row_is_never_blended_with_weights_fitted_on_its_own_fold():
    y, members = _members("regression", 4, 80, seed=5)
    fold = np.repeat([2, 0, 1, 3], 20)  # unsorted fold ids: fold_scores follow the sorted ids
    report, oof = bl.score_blend(members, y, fold, "rmse", "regression", "weights", steps=10)
    assert report["folds"] == [0, 1, 2, 3]
    for i, k in enumerate(report["folds"]):
        held = fold == k
        w = bl.fit_weights([p[~held] for p in members], y[~held], "rmse", "regression", steps=10)
        np.testing.assert_allclose(report["fold_weights"][i], w)
        np.testing.assert_allclose(oof[held], sum(wi * p[held] for wi, p in zip(w, members, strict=True)))
        assert report["fold_scores"][i] == pytest.approx(score("rmse", y[held], oof[held], "regression"))

    changed = y.copy()
    held = fold == 1
    changed[held] = -3 * changed[held] + 5  # fold 1's truth changes a lot
    report2, oof2 = bl.score_blend(members, changed, fold, "rmse", "regression", "weights", steps=10)
    np.testing.assert_array_equal(oof2[held], oof[held])  # fold 1's rows: weights fitted without fold 1
    assert report2["fold_weights"] != report["fold_weights"]  # the other folds saw the change


def test_evaluate_report_and_applying_it_to_test():
    y, members = _members("multiclass", 3, 60, seed=6)
    report, oof = bl.score_blend(members, y, np.arange(60) % 5, "log_loss", "multiclass", "weights", steps=10)
    json.dumps(report)  # JSON-ready
    assert report["search"] == "exhaustive" and report["method"] == "weights"
    assert report["member_scores"] == [score("log_loss", y, p, "multiclass") for p in members]
    assert oof.shape == members[0].shape
    w = np.asarray(report["weights"])
    np.testing.assert_allclose(w, bl.fit_weights(members, y, "log_loss", "multiclass", steps=10))
    assert report["score_in_sample"] == pytest.approx(score("log_loss", y, sum(wi * p for wi, p in zip(
        w, members, strict=True)), "multiclass"))
    _, test = _members("multiclass", 3, 25, seed=7)
    np.testing.assert_allclose(bl.blend(test, w, "weights"), w[0] * test[0] + w[1] * test[1] + w[2] * test[2])


# --- mean and rank -------------------------------------------------------------------------------


def test_mean_is_the_plain_average():
    y, members = _members("multilabel", 4, 50, seed=8)
    np.testing.assert_allclose(bl.blend(members), np.mean(members, axis=0))
    report, oof = bl.score_blend(members, y, np.arange(50) % 5, "log_loss", "multilabel", "mean")
    np.testing.assert_allclose(oof, np.mean(members, axis=0))
    assert report["weights"] == [0.25] * 4 and report["search"] == "none"
    assert report["score"] == report["score_in_sample"] == score("log_loss", y, np.mean(members, axis=0),
                                                                 "multilabel")


def _rank_truth(p):
    p = np.asarray(p, dtype=np.float64).reshape(len(p), -1)
    out = np.empty_like(p)
    for j in range(p.shape[1]):
        out[:, j] = (rankdata(p[:, j], method="average") - 1) / (len(p) - 1)
    return out


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_rank_mean_matches_scipy(task):
    y, members = _members(task, 3, 40, seed=9)
    members = [np.round(p, 1) for p in members]  # ties, ranked as their average
    want = np.mean([_rank_truth(p) for p in members], axis=0)
    np.testing.assert_allclose(bl.blend(members, method="rank"), want)
    report, oof = bl.score_blend(members, y, np.arange(40) % 4, "roc_auc", task, "rank")
    np.testing.assert_allclose(oof, want)  # ranked within the whole OOF
    # AUC sees ties: score against the same mean summed exactly (rows tied in every member stay tied)
    exact = np.sum([rankdata(p, axis=0) - 1 for p in members], axis=0) / (3 * 39)
    np.testing.assert_allclose(exact, want)
    assert report["score"] == report["score_in_sample"] == score("roc_auc", y, exact, task)
    _, test = _members(task, 3, 7, seed=10)  # test predictions ranked within the test set
    np.testing.assert_allclose(bl.blend(test, method="rank"), np.mean([_rank_truth(p) for p in test], axis=0))
    np.testing.assert_allclose(bl.blend([t[:1] for t in test], method="rank"), 0.5)  # one row


def test_rank_is_refused_off_rank_metrics():
    y, members = _members("binary", 3, 40, seed=11)
    with pytest.raises(ValueError, match="rank-based"):
        bl.score_blend(members, y, np.arange(40) % 4, "log_loss", "binary", "rank")
    with pytest.raises(ValueError, match="rank-based"):
        bl.check_method("rank", "accuracy", "binary")
    with pytest.raises(ValueError, match="multiclass"):
        bl.check_method("rank", "roc_auc", "multiclass")
    bl.check_method("rank", "roc_auc", "binary")


# --- refusals ------------------------------------------------------------------------------------


def test_refusals():
    y, members = _members("binary", 3, 20, seed=12)
    fold = np.arange(20) % 2
    cases = [
        (lambda: bl.blend([members[0], members[1][:10]]), "same shape"),
        (lambda: bl.score_blend([members[0], members[1][:, 0]], y, fold, "log_loss", "binary"), "same shape"),
        (lambda: bl.blend(members[:1]), "at least 2"),
        (lambda: bl.fit_weights(members[:1], y, "log_loss", "binary"), "at least 2"),
        (lambda: bl.blend([members[0], np.where(members[1] > 0.5, np.nan, members[1])]), "NaN"),
        (lambda: bl.score_blend(members, y, fold, "log_loss", "binary", "median"), "not one of"),
        (lambda: bl.blend(members, [0.5, 0.5, 0.5], "weights"), "summing to 1"),
        (lambda: bl.blend(members, [-0.5, 1.0, 0.5], "weights"), "non-negative"),
        (lambda: bl.blend(members, [0.5, 0.5, 0.0], "mean"), "equal weights"),
        (lambda: bl.score_blend(members, y[:10], fold, "log_loss", "binary"), "one row each"),
        (lambda: bl.score_blend(members, y, np.zeros(20), "log_loss", "binary"), "two folds"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("seed", range(3))
def test_weights_judged_after_a_temperature_equal_brute_force_of_the_judged_blend(seed):
    """Under log loss a blend is submitted after its temperature: with `judge`, the weights are the grid's
    best for the tempered blend (a temperature refitted for every candidate), not for the raw one."""
    from podium.evaluate.postprocess import fit

    y, members = _members("multiclass", 3, 60, seed)
    members = [0.5 * p + 0.5 / 3 for p in members]  # underconfident, as Mixup and smoothing leave them

    def judge(rows_y, blended):
        return fit("temperature", rows_y, blended, "log_loss", "multiclass").apply(blended)

    w = bl.fit_weights(members, y, "log_loss", "multiclass", steps=10, judge=judge)
    best = max(-score("log_loss", y, judge(y, sum(wi * p for wi, p in zip(c, members, strict=True))), "multiclass")
               for c in (np.array(k) / 10 for k in itertools.product(range(11), repeat=3) if sum(k) == 10))
    got = -score("log_loss", y, judge(y, sum(wi * p for wi, p in zip(w, members, strict=True))), "multiclass")
    assert got == pytest.approx(best, abs=1e-9)
    raw = bl.fit_weights(members, y, "log_loss", "multiclass", steps=10)
    tempered = -score("log_loss", y, judge(y, sum(wi * p for wi, p in zip(raw, members, strict=True))), "multiclass")
    assert got >= tempered - 1e-12  # judged weights are never worse for the submitted (tempered) blend
