"""postprocess.tta_weight: the weight between the TTA mean and the plain view is the grid's best by
scikit-learn's log loss, chosen for each fold without its rows, and the CV, the post-processing
and the submission use it the way they are documented to."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss

from podium.evaluate.tta_weight import WEIGHTS, choose, fit_tta_weight, mixed
from podium.runs import layout

from conftest import tiny_config, write_competition
from helpers import fake_experiment


def _probs(rng, n, c, sharp):
    p = rng.dirichlet(np.ones(c) / sharp, n)
    return p


def _truth_choice(y, tta, plain):
    losses = [log_loss(y, mixed(tta, plain, w), labels=[0, 1, 2]) for w in WEIGHTS]
    best = min(losses)
    return max(w for w, v in zip(WEIGHTS, losses, strict=True) if v <= best + 1e-12)


def test_the_weight_is_the_grids_best_by_sklearns_log_loss_and_nested_per_fold():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = 60
        y = rng.integers(0, 3, n)
        good = np.eye(3)[y] * 0.6 + 0.4 * _probs(rng, n, 3, 1.0)
        noise = _probs(rng, n, 3, 1.0)
        # in turns the TTA mean or the plain view carries the signal, or both some of it
        tta, plain = [(good, noise), (noise, good), (0.5 * good + 0.5 * noise, good)][trial % 3]
        fold = np.arange(n) % 3
        fitted = fit_tta_weight(y, tta, plain, fold, "multiclass")
        assert fitted["weight"] == _truth_choice(y, tta, plain)
        for k in range(3):
            held = fold == k
            assert fitted["fold_weights"][k] == _truth_choice(y[~held], tta[~held], plain[~held])
            np.testing.assert_allclose(fitted["nested"][held], mixed(tta, plain, fitted["fold_weights"][k])[held])
            np.testing.assert_allclose(fitted["mixtures"][k], mixed(tta, plain, fitted["fold_weights"][k]))
    same = _probs(rng, 30, 3, 1.0)
    assert choose(rng.integers(0, 3, 30), same, same, "multiclass")[0] == 1.0  # a tie keeps the TTA asked for


def _experiment(tmp_path, plain_is_truth: bool, **sections):
    """A fake experiment with TTA on: fold files of random TTA means, and plain views that are the
    truth (so the weight must go to 0) or the same as the TTA mean."""
    root, _ = write_competition(tmp_path / "c", n_train=45, n_test=9, probability_sample=True)
    cfg = fake_experiment(tiny_config(root, tmp_path / "runs", predict={"tta_hflip": True}, **sections), seed=3)
    train = pd.read_csv(root / "train.csv", dtype={"id": str}).set_index("id")["label"]
    for k in range(3):
        for name, plain_name, truth in ((layout.OOF_CSV, layout.OOF_PLAIN_CSV, train),
                                        (layout.TEST_CSV, layout.TEST_PLAIN_CSV, None)):
            df = pd.read_csv(layout.fold_dir(cfg, k) / name, dtype={"id": str})
            if plain_is_truth and truth is not None:
                onehot = np.eye(3)[[("a", "b", "c").index(c) for c in truth.loc[df["id"]]]] * 0.9 + 0.1 / 3
                plain = df.assign(**{c: onehot[:, j] for j, c in enumerate("abc")})
            else:
                plain = df.assign(a=0.2, b=0.3, c=0.5) if truth is None else df
            plain.to_csv(layout.fold_dir(cfg, k) / plain_name, index=False)
    return cfg, train


def test_make_oof_scores_the_nested_weight_and_submit_applies_the_fitted_one(tmp_path):
    from podium.evaluate.cv import update_oof
    from podium.stages.current import load_current
    from podium.stages.submit import run_submit

    cfg, train = _experiment(tmp_path, plain_is_truth=True)
    cv, _ = update_oof(cfg, load_current(cfg, [0, 1, 2]))
    assert cv["tta"]["weight"] == 0.0 and cv["tta"]["fold_weights"] == [0.0, 0.0, 0.0]
    oof = pd.read_csv(cfg.run_dir / layout.OOF_CSV, dtype={"id": str}).set_index("id")
    y = [("a", "b", "c").index(c) for c in train.loc[oof.index]]
    assert cv["score"] == pytest.approx(accuracy_score(y, oof[["a", "b", "c"]].to_numpy().argmax(axis=1)))
    assert cv["score"] == 1.0 and cv["tta"]["score_without"] == 1.0 and cv["tta"]["score_tta_mean"] < 0.6
    assert json.loads((cfg.run_dir / layout.TTA_WEIGHT_JSON).read_text()) == {"weight": 0.0}
    sub = pd.read_csv(run_submit(cfg))
    np.testing.assert_allclose(sub[["a", "b", "c"]].to_numpy(), [[0.2, 0.3, 0.5]] * len(sub), atol=1e-9)

    # switched off: the TTA mean, as before, and no weight file left for a submission to apply
    off = cfg.model_copy(update={"postprocess": cfg.postprocess.model_copy(update={"tta_weight": False})})
    cv, _ = update_oof(off, load_current(off, [0, 1, 2]))
    assert "weight" not in cv["tta"] and cv["score"] < 0.6
    assert not (cfg.run_dir / layout.TTA_WEIGHT_JSON).exists()


def test_post_processing_for_a_fold_is_fitted_on_that_folds_own_mixture(tmp_path):
    """log_loss fits a temperature nested: for fold k, on the other folds' rows mixed by fold k's weight."""
    from podium.evaluate.cv import update_oof
    from podium.evaluate.postprocess import fit
    from podium.stages.current import load_current

    cfg, train = _experiment(tmp_path, plain_is_truth=True, metric="log_loss")
    comp = load_current(cfg, [0, 1, 2])
    cv, _ = update_oof(cfg, comp)
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={"id": str}).set_index("id")["fold"]
    ids = comp.train["id"].to_numpy()
    fold = folds.loc[ids].to_numpy()
    y = comp.encode(comp.train)

    def read(name):
        return pd.concat([pd.read_csv(layout.fold_dir(cfg, k) / name, dtype={"id": str}) for k in range(3)]
                         ).set_index("id").loc[ids, ["a", "b", "c"]].to_numpy()

    tta, plain = read(layout.OOF_CSV), read(layout.OOF_PLAIN_CSV)
    out = np.empty_like(tta)
    for k in range(3):
        held = fold == k
        w = _truth_choice(y[~held], tta[~held], plain[~held])
        mix = mixed(tta, plain, w)
        out[held] = fit("temperature", y[~held], mix[~held], "log_loss", "multiclass").apply(mix[held])
    assert cv["postprocess"]["kind"] == "temperature"
    assert cv["score"] == pytest.approx(log_loss(y, out, labels=[0, 1, 2]), abs=1e-9)
