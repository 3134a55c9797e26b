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


def _proper(members, y, task, w):
    """The blend's proper score by sklearn: log loss after a temperature fitted to it (the post-processing's own
    Brent search), or the mean squared error."""
    from podium.evaluate.postprocess import fit

    blended = sum(wi * p for wi, p in zip(w, members, strict=True))
    if task == "regression":
        return score("rmse", y, blended, task) ** 2
    return score("log_loss", y, fit("temperature", y, blended, "log_loss", task).apply(blended), task)


def _grid(n_members, steps):
    """Every weight vector on the 1/steps simplex grid (itertools over all count vectors summing to steps)."""
    return [np.array(c) / steps for c in itertools.product(range(steps + 1), repeat=n_members) if sum(c) == steps]


def _signed(metric, value):
    return value if higher_is_better(metric) else -value


def _check_simplex(w, n_members):
    assert w.shape == (n_members,)
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)


# --- weights: fitted on a proper score -----------------------------------------------------------


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_weights_minimise_the_proper_score_below_every_grid_point(task):
    """Whatever the metric, the weights minimise the log loss after a temperature (the squared error for a
    regression): no point of a 1/10 grid does better (scored by sklearn, the temperature refitted for each)."""
    y, members = _members(task, 3, 80, seed=1)
    w = bl.fit_weights(members, y, task)
    _check_simplex(w, 3)
    got = _proper(members, y, task, w)
    grid = [_proper(members, y, task, v) for v in _grid(3, 10)]
    assert got <= min(grid) + 1e-7
    assert got < _proper(members, y, task, np.full(3, 1 / 3))  # the members differ: fitting pays


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "regression"])
def test_the_proper_score_gradient_matches_finite_differences(task):
    from scipy.optimize import approx_fprime

    y, members = _members(task, 3, 50, seed=13)
    f, n_vars = bl._proper_score(np.stack(members), y, task)
    x = np.append([0.2, 0.5, 0.3], [0.3] * (n_vars - 3))
    np.testing.assert_allclose(f(x)[1], approx_fprime(x, lambda v: f(v)[0], 1e-7), rtol=1e-4, atol=1e-6)
    assert f(x)[0] == pytest.approx(_proper_score_by_sklearn(members, y, task, x[:3], x[3:]), rel=1e-9)


def _proper_score_by_sklearn(members, y, task, w, log_t):
    from podium.evaluate.postprocess import Fitted

    blended = sum(wi * p for wi, p in zip(w, members, strict=True))
    if task == "regression":
        return score("rmse", y, blended, task) ** 2
    return score("log_loss", y, Fitted("temperature", task, (float(np.exp(log_t[0])),)).apply(blended), task)


def test_identical_members_get_equal_weights_and_a_useless_one_none():
    y, members = _members("multiclass", 1, 60, seed=2)
    np.testing.assert_allclose(bl.fit_weights(members * 3, y, "multiclass"), [1 / 3] * 3)
    rng = np.random.default_rng(2)
    noise = _softmax(rng.normal(0, 1, members[0].shape))  # knows nothing of y
    w = bl.fit_weights([members[0], noise], y, "multiclass")
    assert w[1] < 0.02


def _nested_by_hand(members, y, fold, task):
    """The share of the plain mean that `score_blend` must choose for these rows, recomputed from its rule: each
    share's blend nested over the folds (weights fitted without each fold by `fit_weights`); each row's log loss
    after a temperature fitted to the blend, or its squared error; a share other
    than 1 is eligible where it beats the mean's by more than GAIN_Z standard errors of the paired differences;
    the eligible share with the lowest mean loss, ties to the larger share."""
    from podium.evaluate.postprocess import fit

    def row_loss(p):
        if task == "regression":
            return (p.reshape(-1) - y) ** 2
        q = fit("temperature", y, p, "log_loss", task).apply(p)
        if task == "multiclass":
            return np.array([-np.log(np.clip(q[i, y[i]], 1e-7, 1)) for i in range(len(y))])
        t = y.reshape(len(y), -1)
        q = np.clip(q.reshape(t.shape), 1e-7, 1 - 1e-7)
        return -np.mean(t * np.log(q) + (1 - t) * np.log(1 - q), axis=1)

    fits = {k: bl.fit_weights([p[fold != k] for p in members], y[fold != k], task) for k in np.unique(fold)}
    best, base = None, None
    for share in bl.MEAN_SHARES:
        oof = np.zeros_like(np.asarray(members[0], dtype=np.float64))
        for k, w in fits.items():
            w = share / len(w) + (1 - share) * w
            oof[fold == k] = sum(wi * p[fold == k] for wi, p in zip(w, members, strict=True))
        loss = row_loss(oof)
        base = loss if base is None else base
        d = base - loss
        z = 0.0 if np.std(d) == 0 else np.mean(d) / (np.std(d, ddof=1) / np.sqrt(len(d)))
        if (share == 1.0 or z > bl.GAIN_Z) and (best is None or loss.mean() < best[1] - 1e-9):
            best = (share, loss.mean())
    return best[0], fits


@pytest.mark.parametrize("task,metric,differ,n", [("multiclass", "accuracy", True, 600),
                                                  ("binary", "roc_auc", True, 600), ("regression", "rmse", True, 240),
                                                  ("multilabel", "f1_macro", True, 240),
                                                  ("multiclass", "log_loss", False, 240)])
def test_the_share_of_the_mean_is_chosen_nested_on_significant_gains(task, metric, differ, n):
    """The share is the rule's, recomputed by hand, and each fold's share is the rule's on the other folds
    only. Members whose noise grows with the member gain from fitting; members that differ only in confidence
    (as Mixup and smoothing leave them) do not, after the temperature."""
    y, members = _members(task, 3, n, seed=14)
    if not differ:
        members = [(1 - c) * members[0] + c / 3 for c in (0.0, 0.3, 0.6)]
    fold = np.arange(n) % 3
    report, oof = bl.score_blend(members, y, fold, metric, task, "weights")
    share, fits = _nested_by_hand(members, y, fold, task)
    assert report["mean_share"] == share
    assert share < 1.0 if differ else share == 1.0
    np.testing.assert_allclose(report["weights"], share / 3 + (1 - share) * bl.fit_weights(members, y, task))
    for i, k in enumerate(report["folds"]):  # each fold's share chosen on the other folds, nested among them
        rest = fold != k
        inner, _ = _nested_by_hand([p[rest] for p in members], y[rest], fold[rest], task)
        assert report["fold_mean_shares"][i] == inner
        np.testing.assert_allclose(report["fold_weights"][i], inner / 3 + (1 - inner) * fits[k])
    assert report["score"] == score(metric, y, oof, task)


# --- honest scoring ------------------------------------------------------------------------------


@pytest.mark.parametrize("task,metric", [("regression", "rmse"), ("binary", "log_loss"), ("binary", "accuracy")])
def test_weights_that_fit_noise_are_shrunk_to_the_mean(task, metric):
    # many members that are noise around a weak signal, few rows: the fitted weights fit the noise (better
    # in-sample than nested, on the score they were fitted on), so the blend keeps the plain mean
    y, members = _members(task, 8, 40, seed=4, signal=0.3)
    fold = np.arange(40) % 4
    report, oof = bl.score_blend(members, y, fold, metric, task, "weights")
    nested = np.zeros_like(np.asarray(members[0], dtype=np.float64))
    for k in range(4):
        w = bl.fit_weights([p[fold != k] for p in members], y[fold != k], task)
        nested[fold == k] = sum(wi * p[fold == k] for wi, p in zip(w, members, strict=True))
    assert _proper(members, y, task, report["fitted_weights"]) < _proper([nested], y, task, [1.0])
    assert report["mean_share"] == 1.0 and report["fold_mean_shares"] == [1.0] * 4
    np.testing.assert_allclose(oof, np.mean(members, axis=0))
    assert report["score"] == score(metric, y, oof, task)
    assert len(report["fold_scores"]) == 4 and report["folds"] == [0, 1, 2, 3]


def test_a_row_is_never_blended_with_weights_fitted_on_its_own_fold():
    y, members = _members("regression", 4, 80, seed=5)
    fold = np.repeat([2, 0, 1, 3], 20)  # unsorted fold ids: fold_scores follow the sorted ids
    report, oof = bl.score_blend(members, y, fold, "rmse", "regression", "weights")
    assert report["folds"] == [0, 1, 2, 3]
    for i, k in enumerate(report["folds"]):
        held = fold == k
        w = bl.fit_weights([p[~held] for p in members], y[~held], "regression")
        share = report["fold_mean_shares"][i]
        np.testing.assert_allclose(report["fold_weights"][i], share / 4 + (1 - share) * w)
        w = np.asarray(report["fold_weights"][i])
        np.testing.assert_allclose(oof[held], sum(wi * p[held] for wi, p in zip(w, members, strict=True)))
        assert report["fold_scores"][i] == pytest.approx(score("rmse", y[held], oof[held], "regression"))

    changed = y.copy()
    held = fold == 1
    changed[held] = -3 * changed[held] + 5  # fold 1's truth changes a lot
    report2, oof2 = bl.score_blend(members, changed, fold, "rmse", "regression", "weights")
    np.testing.assert_array_equal(oof2[held], oof[held])  # fold 1's rows: weights and share chosen without fold 1
    assert report2["fold_weights"] != report["fold_weights"]  # the other folds saw the change


def _seeds(n_members, n, seed, noise=(1.0, 1.0)):
    """Ten-class predictions like seeds of one recipe: a difficulty all members share and noise of their own
    (equal noise: equally good members)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    shared = rng.normal(0, 1.0, (n, 10))
    return y, [_softmax(3 * np.eye(10)[y] + shared + rng.normal(0, noise[m], (n, 10))) for m in range(n_members)]


@pytest.mark.parametrize("seed", range(4))
def test_equally_good_members_blend_no_worse_than_their_mean(seed):
    """Two seeds of one recipe: weights searched on accuracy used to chase single images and score below the
    plain mean nested; fitted on the log loss, and kept off the mean unless they gain significantly, they do not."""
    y, members = _seeds(2, 1000, seed)
    fold = np.arange(1000) % 5
    mean = score("accuracy", y, np.mean(members, axis=0), "multiclass")
    report, _ = bl.score_blend(members, y, fold, "accuracy", "multiclass", "weights")
    assert report["score"] >= mean - 1e-12
    assert report["score"] >= max(report["member_scores"])


def test_a_clearly_better_member_is_weighted_up():
    y, members = _seeds(2, 1000, 7, noise=(1.0, 2.5))
    fold = np.arange(1000) % 5
    mean = score("accuracy", y, np.mean(members, axis=0), "multiclass")
    report, _ = bl.score_blend(members, y, fold, "accuracy", "multiclass", "weights")
    assert report["mean_share"] < 1 and report["weights"][0] > 0.7
    assert report["score"] > mean + 0.02 and report["score"] >= max(report["member_scores"])


def test_too_few_folds_to_choose_honestly_blend_as_the_mean():
    y, members = _members("binary", 3, 40, seed=15)
    report, oof = bl.score_blend(members, y, np.arange(40) % 2, "roc_auc", "binary", "weights")
    assert "too few" in report["note"] and report["mean_share"] == 1.0
    np.testing.assert_allclose(oof, np.mean(members, axis=0))
    np.testing.assert_allclose(report["weights"], [1 / 3] * 3)


def test_evaluate_report_and_applying_it_to_test():
    y, members = _members("multiclass", 3, 60, seed=6)
    report, oof = bl.score_blend(members, y, np.arange(60) % 5, "log_loss", "multiclass", "weights")
    json.dumps(report)  # JSON-ready
    assert report["fit"] == "log_loss after a temperature" and report["method"] == "weights"
    assert report["member_scores"] == [score("log_loss", y, p, "multiclass") for p in members]
    assert oof.shape == members[0].shape
    w = np.asarray(report["weights"])
    share = report["mean_share"]
    np.testing.assert_allclose(w, share / 3 + (1 - share) * bl.fit_weights(members, y, "multiclass"))
    np.testing.assert_allclose(report["fitted_weights"], bl.fit_weights(members, y, "multiclass"))
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
    assert report["weights"] == [0.25] * 4 and report["fit"] is None
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
        (lambda: bl.fit_weights(members[:1], y, "binary"), "at least 2"),
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
