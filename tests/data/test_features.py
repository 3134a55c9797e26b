"""data.features: tabular metadata beside the image. The encoding is fitted on a fold's training
rows only (checked against pandas on those rows), every column is checked before training, the
model reads the metadata through timm's own layer groups, and on a competition whose label lives
in the metadata alone the CV rises from chance with it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from podium.data.features import MISSING, OTHER, Column, FeatureEncoder, feature_layout
from podium.errors import PodiumError
from podium.runs import layout

from conftest import tiny_config, write_competition


def _table():
    return pd.DataFrame({"age": [30.0, 50.0, np.nan, 70.0, 20.0, 90.0],
                         "site": ["arm", "leg", None, "arm", "head", "torso"],
                         "id": list("abcdef")})


def test_encoding_is_fitted_on_the_training_rows_only():
    df = _table()
    columns = feature_layout(df, ["age", "site"], [], Path("train.csv"), ["id"])
    sites = (MISSING, "arm", "head", "leg", "torso")
    assert columns == (Column("age", "numeric"), Column("site", "categorical", sites))
    train, valid = df.iloc[:4], df.iloc[4:]  # valid holds the only 'head' and 'torso' rows
    enc = FeatureEncoder.fit(columns, train)
    ages = train["age"].dropna()
    assert enc.scale["age"] == pytest.approx((ages.mean(), ages.std(ddof=0)))  # 30, 50, 70: not 20 or 90
    out = enc.transform(valid)
    names = enc.names()
    assert names == ["age", f"age{MISSING}", f"site={MISSING}", "site=arm", "site=head", "site=leg", "site=torso",
                     f"site={OTHER}"]
    assert out.shape == (2, enc.width) == (2, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], (valid["age"] - ages.mean()) / ages.std(ddof=0), rtol=1e-6)
    # categories the fold's training rows never showed land in <other>, not in columns never trained
    np.testing.assert_array_equal(out[:, 2:], [[0, 0, 0, 0, 0, 1]] * 2)
    missing = enc.transform(train)
    np.testing.assert_array_equal(missing[:, 1], [0, 0, 1, 0])  # the missing age is flagged ...
    assert missing[2, 0] == 0.0  # ... and standardized to the training mean
    np.testing.assert_array_equal(missing[2, 2:], [1, 0, 0, 0, 0, 0])  # a missing category is a category
    again = FeatureEncoder.from_json(json.loads(json.dumps(enc.to_json())))
    np.testing.assert_array_equal(again.transform(df), enc.transform(df))


def test_numbers_listed_as_categorical_are_categories_and_constants_do_not_divide_by_zero():
    df = pd.DataFrame({"year": [2018, 2019, 2019, 2020], "flag": [1.0, 1.0, 1.0, 1.0]})
    columns = feature_layout(df, ["year", "flag"], ["year"], Path("t.csv"), [])
    assert columns[0] == Column("year", "categorical", ("2018", "2019", "2020")) and columns[1].kind == "numeric"
    out = FeatureEncoder.fit(columns, df).transform(df)
    np.testing.assert_array_equal(out[:, 3], [0, 0, 0, 0])  # year's <other>
    np.testing.assert_array_equal(out[:, 4], [0, 0, 0, 0])  # a constant column: centred, finite


def _features_competition(tmp_path, n_train=90, n_test=30, seed=0):
    """A competition whose label lives in the metadata alone: images of random patterns, a label
    independent of them, a `site` category and an `age` that give it away (one age missing)."""
    data, _ = write_competition(tmp_path / "comp", n_train=n_train, n_test=n_test, seed=seed, probability_sample=True)
    rng = np.random.default_rng(seed + 1)
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    labels = rng.integers(0, 3, len(train))
    train["label"] = np.array(["a", "b", "c"])[labels]
    train["site"] = np.array(["arm", "leg", "head"])[labels]
    train["age"] = 20.0 + 25 * labels + rng.normal(0, 3, len(train))
    train.loc[5, "age"] = np.nan
    train.to_csv(data / "train.csv", index=False)
    test = pd.read_csv(data / "test.csv", dtype={"id": str})
    test_labels = rng.integers(0, 3, len(test))
    test["site"] = np.array(["arm", "leg", "head"])[test_labels]
    test["age"] = 20.0 + 25 * test_labels
    test.to_csv(data / "test.csv", index=False)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: pd.read_csv(d / "test.csv").drop(columns="age").to_csv(d / "test.csv", index=False),
     r"test.csv: no column 'age' \(named in data.features\)"),
    (lambda d: pd.read_csv(d / "test.csv").assign(age="old").to_csv(d / "test.csv", index=False),
     r"test.csv: column 'age' \(data.features\) holds 'old', not a number"),
    (lambda d: pd.read_csv(d / "train.csv").assign(age=np.nan).to_csv(d / "train.csv", index=False),
     r"train.csv: column 'age' \(data.features\) is empty on every row"),
])
def test_bad_feature_columns_are_refused_naming_file_and_column(tmp_path, change, message):
    from podium.data.competition import load_competition

    data = _features_competition(tmp_path)
    change(data)
    cfg = tiny_config(data, tmp_path / "runs", data={"features": ["site", "age"]})
    with pytest.raises(PodiumError, match=message):
        load_competition(cfg)


def test_the_target_or_the_id_is_never_a_feature(tmp_path):
    from podium.data.competition import load_competition

    data = _features_competition(tmp_path)
    for column in ("label", "id"):
        with pytest.raises(PodiumError, match=f"config key 'data.features': '{column}' is train.csv's id or target"):
            load_competition(tiny_config(data, tmp_path / "runs", data={"features": [column]}))
    with pytest.raises(Exception, match="data.categorical: 'site' is not in data.features"):
        tiny_config(data, tmp_path / "runs", data={"features": ["age"], "categorical": ["site"]})


def test_layer_decay_and_weight_decay_groups_are_timms_with_metadata():
    """The wrapped model's image parameters get the lr scale and weight decay timm gives the bare
    model; the MLP and the head are at the top (scale 1)."""
    from podium.config import config_from_dict
    from podium.train.models import WithFeatures, create_model, head_parameters
    from podium.train.optimizer import build_optimizer

    cfg = config_from_dict({"model": {"name": "resnet10t"}, "train": {"layer_decay": 0.7, "weight_decay": 0.1}})

    def scales(model, prefix=""):
        return {id(p): (g["lr_scale"], g["weight_decay"]) for g in build_optimizer(model, cfg).param_groups
                for p in g["params"]}

    bare = create_model(cfg.model, 3)
    wrapped = create_model(cfg.model, 3, n_features=5)
    assert isinstance(wrapped, WithFeatures)
    bare_scales = {name: scales(bare)[id(p)] for name, p in bare.named_parameters() if not name.startswith("fc.")}
    ours = scales(wrapped)
    for name, p in wrapped.body.named_parameters():
        assert ours[id(p)] == bare_scales[name], name
    assert len({s for s, _ in bare_scales.values()}) > 3  # layer decay is really on
    for p in head_parameters(wrapped):
        assert ours[id(p)][0] == 1.0
    out = wrapped(torch.randn(2, 3, 32, 32), torch.randn(2, 5))
    assert out.shape == (2, 3)


def test_a_zero_head_predicts_uniformly_whatever_the_metadata():
    from podium.config import config_from_dict
    from podium.train.models import create_model

    cfg = config_from_dict({"model": {"name": "test_resnet", "head_init": "zero"}})
    model = create_model(cfg.model, 4, n_features=3).eval()
    logits = model(torch.randn(3, 3, 32, 32), torch.randn(3, 3) * 10)
    torch.testing.assert_close(logits, torch.zeros(3, 4))


def _train_cv(cfg):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.stages.oof import run_oof
    from podium.train.loop import train_fold
    from podium.train.precision import resolve

    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    for k in range(cfg.folds.n_splits):
        train_fold(cfg, k, layout.train_inputs(cfg, k, data_hash), speed=resolve(cfg, comp.num_outputs))
    return run_oof(cfg, show=False)


# trains three tiny folds twice in this process (about 10 s)
def test_metadata_that_carries_the_label_lifts_the_cv_and_the_bundle_predicts_as_submit(tmp_path,
                                                                                       fresh_accelerate_state):
    from podium.predict.kernel import predict_bundle
    from podium.stages.bundle import run_bundle
    from podium.stages.submit import run_submit

    data = _features_competition(tmp_path)
    common = dict(train={"epochs": 6}, mix={"mixup_alpha": 0, "cutmix_alpha": 0}, metric="accuracy")
    with_meta = tiny_config(data, tmp_path / "runs", experiment="meta", data={"features": ["site", "age"]},
                            submissions_dir=str(tmp_path / "subs"), **common)
    without = tiny_config(data, tmp_path / "runs", experiment="plain", **common)
    scored = _train_cv(with_meta)
    plain = _train_cv(without)
    assert scored["score"] >= 0.9 and plain["score"] <= 0.6, (scored["score"], plain["score"])
    # each fold's scaling was fitted on its own training rows: the record says so
    folds = pd.read_csv(layout.folds_csv(with_meta), dtype={"id": str})
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    for k in range(3):
        saved = FeatureEncoder.from_json(layout.fold_record(with_meta, k)["info"]["features"])
        rows = train[train["id"].isin(folds.loc[folds["fold"] != k, "id"])]
        assert saved.scale["age"] == pytest.approx((rows["age"].mean(), rows["age"].std(ddof=0)))
    sub = pd.read_csv(run_submit(with_meta))
    run_bundle(with_meta)
    out = predict_bundle(with_meta.run_dir / layout.BUNDLE, data, tmp_path / "bundle.csv")
    ours = pd.read_csv(out)
    assert list(ours["id"]) == list(sub["id"])
    np.testing.assert_allclose(ours[["a", "b", "c"]], sub[["a", "b", "c"]], rtol=0, atol=1e-6)
