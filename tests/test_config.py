"""Config validation: unknown keys with a did-you-mean, wrong types, bad values, typed overrides."""

import pytest

from podium.config import config_hash, load_config
from podium.errors import PodiumError

from conftest import REPO


def _write(tmp_path, text, name="exp1.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path, overrides=()):
    with pytest.raises(PodiumError) as info:
        load_config(path, list(overrides))
    message = str(info.value)
    assert "\n" not in message, "config errors are one line"
    return message


def test_default_config_loads_and_names_the_experiment():
    cfg = load_config(REPO / "configs" / "default.yaml")
    assert cfg.experiment == "default"
    assert cfg.data.dir == "data/demo" and cfg.metric == "accuracy"
    assert str(cfg.run_dir) == "runs/default"


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = _write(tmp_path, "train: {epoch: 3}\n")
    msg = _error(path)
    assert "train.epoch" in msg and "did you mean 'train.epochs'" in msg and "exp1.yaml" in msg
    msg = _error(_write(tmp_path, "trian: {epochs: 3}\n"))
    assert "'trian'" in msg and "did you mean 'train'" in msg


def test_wrong_type_and_bad_value_name_the_key(tmp_path):
    path = _write(tmp_path, "seed: 1\n")
    assert "train.epochs" in _error(path, ["train.epochs=abc"])
    assert "folds.n_splits" in _error(path, ["folds.n_splits=1"])
    assert "data.task" in _error(path, ["data.task=regression"])
    assert "metric" in _error(path, ["metric=mae"])


def test_overrides_are_typed_by_the_schema(tmp_path):
    path = _write(tmp_path, "train: {epochs: 7}\n")
    cfg = load_config(path, ["train.epochs=3", "model.name=resnet10t", "train.lr=1e-3", "folds.group_column=null",
                             "data.target=[a, b]", "data.task=multilabel", "folds.strategy=multilabel_stratified"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.name == "resnet10t"
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.data.target == ["a", "b"]
    assert "train.epohcs" in _error(path, ["train.epohcs=3"])
    with pytest.raises(PodiumError, match="expected key=value"):
        load_config(path, ["train.epochs"])


def test_cross_key_checks(tmp_path):
    path = _write(tmp_path, "data: {task: multilabel, target: label}\n")
    assert "data.target" in _error(path)
    path = _write(tmp_path, "folds: {strategy: group}\n")
    assert "folds.group_column" in _error(path)


def test_config_is_frozen_and_hash_tracks_content(tmp_path):
    path = _write(tmp_path, "seed: 1\n")
    a, b = load_config(path), load_config(path, ["train.epochs=2"])
    with pytest.raises(Exception):
        a.seed = 3
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, ("seed", "data", "folds")) == config_hash(b, ("seed", "data", "folds"))


def test_missing_config_file(tmp_path):
    with pytest.raises(PodiumError, match="not found"):
        load_config(tmp_path / "nope.yaml")
