"""data.extra: extra training rows join every fold's training rows and nothing else (counted by id:
never in folds.csv, a validation fold, oof.csv or a score), checked as train.csv is, and part of
the data a fold's freshness is judged by."""

import cv2
import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.runs import layout

from conftest import pattern_image, tiny_config, write_competition


def _extra(folder, n=12, classes=("a", "b", "c"), prefix="x", seed=7):
    """A folder of extra labelled images: extra.csv (id, label) and img/<id>.png."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    kinds = np.arange(n) % len(classes)
    for i, k in zip(ids, kinds, strict=True):
        cv2.imwrite(str(folder / "img" / f"{i}.png"), pattern_image(int(k), rng))
    pd.DataFrame({"id": ids, "label": [classes[k] for k in kinds]}).to_csv(folder / "extra.csv", index=False)
    return folder, ids


def _config(tmp_path, extra_dir, weight=1.0, **more):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    return tiny_config(data, tmp_path / "runs", data={"extra": [
        {"dir": str(extra_dir), "csv": "extra.csv", "images": "img/{id}.png", "weight": weight}]}, **more)


def test_extra_rows_join_every_training_fold_and_nothing_else(tmp_path):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loaders import build_loaders

    extra_dir, extra_ids = _extra(tmp_path / "more")
    cfg = _config(tmp_path, extra_dir)
    comp, data_hash = preflight(cfg)
    train_ids = set(comp.train["id"])
    assert set(comp.extra["id"]) == set(extra_ids) and not train_ids & set(extra_ids)
    run_folds(cfg, comp)
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={"id": str})
    assert set(folds["id"]) == train_ids and len(folds) == len(train_ids)  # every train row once, no extra row
    for k in range(3):
        data = build_loaders(cfg, comp, k, data_hash)
        valid = set(data.valid_df["id"])
        assert valid == set(folds.loc[folds["fold"] == k, "id"])
        assert set(data.train_df["id"]) == (train_ids - valid) | set(extra_ids)
        assert len(data.train_df) == len(train_ids - valid) + len(extra_ids) and data.extra_rows == len(extra_ids)
        dataset = data.train_loader.dataset
        assert len(dataset) == len(data.train_df)
        assert dataset.paths[-len(extra_ids):] == [str(extra_dir / "img" / f"{i}.png") for i in extra_ids]
        truth = pd.read_csv(extra_dir / "extra.csv").set_index("id").loc[extra_ids, "label"]
        np.testing.assert_array_equal(dataset.targets[-len(extra_ids):],
                                      [comp.classes.index(c) for c in truth])  # their own labels, as class indices


@pytest.mark.slow  # trains three folds in this process
def test_extra_rows_never_reach_oof_or_a_score(tmp_path, fresh_accelerate_state):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.stages.oof import run_oof
    from podium.train.loop import train_fold
    from podium.train.precision import resolve

    extra_dir, extra_ids = _extra(tmp_path / "more")
    # weighted and mixed: the loop's weighted-loss path with Mixup/CutMix on every batch
    cfg = _config(tmp_path, extra_dir, weight=2.0, mix={"prob": 1.0, "off_epochs": 0})
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    for k in range(3):
        train_fold(cfg, k, layout.train_inputs(cfg, k, data_hash), speed=resolve(cfg, comp.num_outputs))
    cv = run_oof(cfg, show=False)
    oof = pd.read_csv(cfg.run_dir / layout.OOF_CSV, dtype={"id": str})
    assert sorted(oof["id"]) == sorted(comp.train["id"]) and cv["rows"] == len(comp.train)
    for k in range(3):
        fold_oof = pd.read_csv(layout.fold_dir(cfg, k) / layout.OOF_CSV, dtype={"id": str})
        assert not set(fold_oof["id"]) & set(extra_ids)
    history = pd.read_csv(layout.fold_dir(cfg, 0) / layout.HISTORY_CSV)
    assert len(history) == 1


def test_a_changed_extra_csv_changes_the_data_hash(tmp_path):
    from podium.stages.current import load_checked

    extra_dir, _ = _extra(tmp_path / "more")
    cfg = _config(tmp_path, extra_dir)
    _, before = load_checked(cfg)
    table = pd.read_csv(extra_dir / "extra.csv")
    table.loc[0, "label"] = "b" if table.loc[0, "label"] != "b" else "c"
    table.to_csv(extra_dir / "extra.csv", index=False)
    _, after = load_checked(cfg)
    assert before != after


def _bad(tmp_path, edit):
    extra_dir, _ = _extra(tmp_path / "more")
    edit(extra_dir)
    cfg = _config(tmp_path, extra_dir)
    from podium.stages.check import preflight

    with pytest.raises(PodiumError) as info:
        preflight(cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_extra_data_is_refused_in_one_line_naming_the_file_and_id(tmp_path):
    def table(folder):
        return pd.read_csv(folder / "extra.csv", dtype={"id": str})

    def write(folder, df):
        df.to_csv(folder / "extra.csv", index=False)

    cases = [
        (lambda f: (f / "extra.csv").unlink(), "extra.csv: file not found"),
        (lambda f: write(f, table(f).drop(columns=["label"])), "extra.csv: no column 'label'"),
        (lambda f: write(f, table(f).assign(label=lambda d: d["label"].where(d.index != 2, "zebra"))),
         "id(s) 'x002' have class(es) 'zebra' that train.csv does not"),
        (lambda f: write(f, table(f).assign(id=lambda d: d["id"].where(d.index != 1, "train0003"))),
         "extra.csv: id 'train0003' is also in train.csv"),
        (lambda f: write(f, table(f).assign(id=lambda d: d["id"].where(d.index != 1, "test0002"))),
         "extra.csv: id 'test0002' is also in the test set"),
        (lambda f: write(f, table(f).assign(label=lambda d: d["label"].where(d.index != 4, None))),
         "target column 'label' is empty or NaN for id(s) 'x004'"),
        (lambda f: (f / "img" / "x005.png").unlink(), "image file(s) missing"),
    ]
    for i, (edit, message) in enumerate(cases):
        got = _bad(tmp_path / str(i), edit)
        assert message in got, got
    assert "x005.png" in _bad(tmp_path / "again", lambda f: (f / "img" / "x005.png").unlink())


def test_with_a_teacher_extra_rows_keep_their_own_truth_as_probability_rows(tmp_path):
    """Distillation turns every training target into a row of probabilities; an extra row, which no
    teacher predicted out of fold, gets its one-hot truth."""
    from podium.data.competition import load_competition
    from podium.train.loaders import with_extra

    extra_dir, extra_ids = _extra(tmp_path / "more", n=6)
    cfg = _config(tmp_path, extra_dir)
    comp = load_competition(cfg)
    soft = np.full((4, 3), 1 / 3, dtype=np.float32)
    rows, targets, n = with_extra(comp, comp.train.head(4), soft)
    assert n == 6 and list(rows["id"][4:]) == extra_ids
    np.testing.assert_array_equal(targets[:4], soft)
    np.testing.assert_array_equal(targets[4:], np.eye(3, dtype=np.float32)[comp.encode(comp.extra)])


def test_extra_weights_reach_the_loss_by_row(tmp_path):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loaders import build_loaders

    extra_dir, extra_ids = _extra(tmp_path / "more")
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    for weight, expected in ((1.0, None), (0.5, 0.5)):
        cfg = tiny_config(data, tmp_path / f"runs{weight}", data={"extra": [
            {"dir": str(extra_dir), "csv": "extra.csv", "images": "img/{id}.png", "weight": weight}]})
        comp, data_hash = preflight(cfg)
        run_folds(cfg, comp)
        fold = build_loaders(cfg, comp, 0, data_hash)
        if expected is None:
            assert fold.row_weights is None  # the plain mean, as without extra data
            continue
        n = len(fold.train_df) - len(extra_ids)
        np.testing.assert_array_equal(fold.row_weights, [1.0] * n + [0.5] * len(extra_ids))


def test_rows_for_the_first_epochs_leave_without_changing_the_epochs_length():
    from podium.data.datasets import BalancedSampler, PhasedShuffle

    until = np.r_[np.full(20, np.inf), np.full(7, 2.0)]  # 20 rows always, 7 extra rows in epochs 0 and 1
    sampler = PhasedShuffle(until, seed=3)
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
        assert len(orders[-1]) == 27 and orders[-1] == list(sampler)  # a function of (seed, epoch)
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(27)) and orders[0] != orders[1]
    for order in orders[2:]:
        assert max(order) < 20 and set(order) == set(range(20))  # every row, some twice, no extra row
        assert max(np.bincount(order)) == 2
    classes = np.r_[np.zeros(10, int), np.ones(10, int), np.full(7, 2)]  # class 2: extra rows only
    balanced = BalancedSampler(classes, seed=0, until=until)
    balanced.set_epoch(1)
    assert np.isclose(float(balanced.weights[20:].sum()), 1.0)  # a third of the draws before they leave
    balanced.set_epoch(2)
    draws = np.array(list(balanced))
    assert len(draws) == 27 and draws.max() < 20 and float(balanced.weights[20:].sum()) == 0.0


def test_extra_rows_for_the_first_epoch_reach_its_batches_only(tmp_path, fresh_accelerate_state):
    from accelerate import Accelerator

    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loaders import build_loaders

    extra_dir, extra_ids = _extra(tmp_path / "more")
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", data={"extra": [
        {"dir": str(extra_dir), "csv": "extra.csv", "images": "img/{id}.png", "epochs": 1}]},
                      train={"batch_size": 4})
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    fold = build_loaders(cfg, comp, 0, data_hash)
    loader = Accelerator(cpu=True).prepare(fold.train_loader)  # as the loop gets it
    seen = []
    for epoch in (0, 1, 2):
        loader.set_epoch(epoch)
        seen.append([int(i) for _, _, _, rows in loader for i in rows])
    first_extra = len(fold.train_df) - len(extra_ids)
    assert len(seen[0]) == len(seen[1]) == len(seen[2])  # the same number of updates every epoch
    assert any(i >= first_extra for i in seen[0])
    assert all(i < first_extra for i in seen[1] + seen[2])
