"""Checkpoint averaging (train.average_top_k): which epochs go in, against a brute-force ranking;
the mean of their weights; BatchNorm statistics against torch's own update_bn; a trained fold
whose final weights are the average and whose best-epoch OOF is scored beside it."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from podium.evaluate.metrics import higher_is_better, score
from podium.runs import layout
from podium.train.finish import average_weights, recompute_batchnorm
from podium.train.state import FoldState

from conftest import tiny_config, write_competition


def _brute_top(epochs, k, metric):
    """The k best epochs by brute force: once any epoch ran at the full size only full-size epochs count
    (smaller ones before it are dropped, none after it joins); best score first (NaN last), ties to the
    earlier epoch."""
    seen = []
    for e in epochs:
        if e["full"] and not all(s["full"] for s in seen):
            seen = [s for s in seen if s["full"]]
        if not e["full"] and any(s["full"] for s in seen):
            continue
        seen.append(e)
    sign = -1 if higher_is_better(metric) else 1
    return sorted(seen, key=lambda e: (np.isnan(e["score"]), 0 if np.isnan(e["score"]) else sign * e["score"],
                                       e["epoch"]))[:k]


@pytest.mark.parametrize("metric", ["accuracy", "log_loss"])
@pytest.mark.parametrize("seed", range(20))
def test_the_k_best_epochs_match_a_brute_force_ranking(metric, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    full_from = int(rng.integers(0, n + 1))
    scores = np.round(rng.uniform(0, 1, n), 1)  # rounded: ties happen
    scores[rng.uniform(size=n) < 0.1] = np.nan
    epochs = [{"score": float(s), "epoch": e, "full": e >= full_from} for e, s in enumerate(scores)]
    k = int(rng.integers(2, 5))
    state = FoldState()
    for e in epochs:
        state.keep_top(k, e["score"], e["epoch"], metric, {"w": torch.tensor([float(e["epoch"])])}, full=e["full"])
    want = _brute_top(epochs, k, metric)
    assert [t["epoch"] for t in state.top] == [e["epoch"] for e in want]
    assert [float(w["w"]) for w in state.top_weights] == [float(e["epoch"]) for e in want]
    assert FoldState().top == []  # k = 1 keeps nothing beyond the best epoch
    one = FoldState()
    one.keep_top(1, 0.5, 0, metric, {"w": torch.zeros(1)}, full=True)
    assert one.top == []


def test_average_of_weights_is_the_elementwise_mean_and_counters_stay():
    ws = [{"a": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}, {"a": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)},
          {"a": torch.tensor([2.0, 1.0]), "n": torch.tensor(7)}]
    out = average_weights(ws)
    torch.testing.assert_close(out["a"], torch.tensor([2.0, 3.0]))
    assert out["n"].item() == 5 and out["n"].dtype == torch.int64


class _Single:
    num_processes = 1


def test_batchnorm_statistics_match_torchs_update_bn():
    from torch.optim.swa_utils import update_bn

    torch.manual_seed(0)

    def make():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                   torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4))

    batches = [torch.randn(5, 3, 10, 10) * 2 + 1 for _ in range(4)]
    ours, theirs = make().eval(), make().eval()
    for m in itertools.chain(ours.modules(), theirs.modules()):  # statistics of some other data
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(7.0)
    assert recompute_batchnorm(ours, [(b, None) for b in batches], _Single()) == 20
    update_bn(batches, theirs)
    for a, b in zip(ours.modules(), theirs.modules(), strict=True):
        if isinstance(a, torch.nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)
            assert a.momentum == 0.1
    assert not ours.training


@pytest.mark.slow  # trains two folds in this process
def test_a_fold_keeps_the_average_of_its_best_epochs_and_scores_the_best_epoch_beside(tmp_path,
                                                                                      fresh_accelerate_state):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.stages.oof import run_oof
    from podium.train.loop import train_fold
    from podium.train.precision import resolve

    data, _ = write_competition(tmp_path / "comp", n_train=40, n_test=10)
    cfg = tiny_config(data, tmp_path / "runs", folds={"n_splits": 2}, resize={"enabled": False},
                      train={"epochs": 4, "average_top_k": 2}, checkpoint={"keep": True})
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    for fold in (0, 1):
        train_fold(cfg, fold, layout.train_inputs(cfg, fold, data_hash), speed=resolve(cfg, comp.num_outputs))

    out = layout.fold_dir(cfg, 0)
    history = pd.read_csv(out / layout.HISTORY_CSV)
    ranked = sorted(zip(history[cfg.metric], history["epoch"], strict=True), key=lambda t: (-t[0], t[1]))
    averaged = sorted(e for _, e in ranked[:2])
    assert history.loc[history["in_final_weights"], "epoch"].tolist() == averaged
    assert layout.trained_info(cfg, 0)["final_weights_epochs"] == averaged

    # the saved weights are the mean of the two kept epochs' (the last checkpoint holds them), BatchNorm's
    # running statistics aside: those were measured again on the training images
    last = sorted((out / layout.CHECKPOINTS).iterdir())[-1]
    kept = [load_file(str(last / f"top{i}.safetensors")) for i in range(2)]
    final = load_file(str(out / layout.WEIGHTS))
    for name, tensor in final.items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        torch.testing.assert_close(tensor, (kept[0][name].double() + kept[1][name].double()).div(2).float())
    assert any(not torch.equal(final[n], kept[0][n]) for n in final if n.endswith("running_mean"))

    cv = run_oof(cfg, show=False)
    best = pd.concat([pd.read_csv(layout.fold_dir(cfg, k) / layout.OOF_BEST_EPOCH_CSV, dtype={"id": str})
                      for k in (0, 1)]).set_index("id")
    train = pd.read_csv(data / "train.csv", dtype={"id": str}).set_index("id").loc[best.index]
    y = comp.encode(train.reset_index())
    assert cv["averaging"]["score_without"] == pytest.approx(
        score(cfg.metric, y, best[comp.prob_columns].to_numpy(), comp.task), abs=1e-12)
    assert cv["averaging"]["epochs"][0] == averaged
