"""Config validation: unknown keys with a did-you-mean, wrong types, bad values, typed overrides."""

import pytest
from pydantic import ValidationError

from podium.config import config_from_dict, config_hash, load_config
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
    assert "data.task" in _error(path, ["data.task=regresion"])
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
    path = _write(tmp_path, "data: {task: binary, target: [a, b]}\n")
    assert "data.target" in _error(path)
    path = _write(tmp_path, "data: {task: regression, target: score}\n")  # metric left at accuracy
    assert "metric: accuracy is not defined for a regression task (one of: qwk, rmse, mae)" in _error(path)
    # tag strings (one column of space-separated labels) and one-hot class columns are targets too
    assert load_config(path, ["data.task=multilabel", "folds.strategy=kfold", "metric=f2_samples"]).data.tag_string
    assert load_config(path, ["data.target=[a, b, c]", "data.task=multiclass"]).data.one_hot


def test_a_config_with_several_errors_lists_them_all(tmp_path):
    path = _write(tmp_path, "train: {epochs: 0, lr: -1}\nmodel: {nmae: x}\n")
    msg = _error(path)
    assert "train.epochs" in msg and "train.lr" in msg and "model.nmae" in msg and "did you mean 'model.name'" in msg
    path = _write(tmp_path, "folds: {strategy: group}\n")
    assert "folds.group_column" in _error(path)


def test_config_is_frozen_and_hash_tracks_content(tmp_path):
    path = _write(tmp_path, "seed: 1\n")
    a, b = load_config(path), load_config(path, ["train.epochs=2"])
    with pytest.raises(ValidationError):  # frozen
        a.seed = 3
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, ("seed", "data", "folds")) == config_hash(b, ("seed", "data", "folds"))


def test_missing_config_file(tmp_path):
    with pytest.raises(PodiumError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_booleans_reach_word_fields_as_their_words(tmp_path):
    # YAML 1.1 reads on/off/yes/no as booleans: the word the README offers must still work.
    path = _write(tmp_path, "seed: 1\n")
    assert load_config(path, ["train.channels_last=on"]).train.channels_last == "on"
    assert load_config(path, ["train.channels_last=off"]).train.channels_last == "off"
    assert load_config(path, ["train.precision=no"]).train.precision == "no"
    assert load_config(_write(tmp_path, "train: {channels_last: on}\n")).train.channels_last == "on"
    assert load_config(_write(tmp_path, "train:\n  channels_last: off\n  precision: no\n")).train.precision == "no"
    # A boolean that stands for no word of the field, and a wrong word, still fail naming the key.
    assert "train.precision" in _error(path, ["train.precision=yes"])
    msg = _error(path, ["train.channels_last=maybe"])
    assert "train.channels_last" in msg and "'maybe'" in msg


def test_yaml_boolean_words_are_found_inside_optional_literals():
    from typing import Literal

    from pydantic import ValidationError

    from podium.config.sections import Section

    class Switch(Section):
        mode: Literal["yes", "no", "later"] | None = None
        flag: Literal["true", "false"] = "true"

    assert Switch.model_validate({"mode": True, "flag": False}) == Switch(mode="yes", flag="false")
    with pytest.raises(ValidationError):
        Switch.model_validate({"mode": 1})  # only booleans are translated, not numbers


def test_bool_fields_accept_the_yaml_words_as_strings(tmp_path):
    path = _write(tmp_path, "data: {cache: 'on'}\ntrain: {compile: 'yes', ema: 'off'}\nresize: {enabled: 'no'}\n")
    cfg = load_config(path, ["predict.tta_hflip='on'", "checkpoint.keep=yes"])
    assert cfg.data.cache is True and cfg.train.compile is True and cfg.train.ema is False
    assert cfg.resize.enabled is False and cfg.predict.tta_hflip is True and cfg.checkpoint.keep is True
    assert "train.compile" in _error(path, ["train.compile=maybe"])


def test_metric_names_come_from_the_metrics_table(tmp_path):
    from podium.config import Config
    from podium.evaluate.metrics import METRICS

    assert Config.model_fields["metric"].annotation.__args__ == tuple(METRICS)
    path = _write(tmp_path, "seed: 1\nfolds: {strategy: kfold}\n")
    for name, metric in METRICS.items():
        assert load_config(path, [f"metric={name}", f"data.task={metric.tasks[0]}"]).metric == name
    for name in METRICS:
        assert f"`{name}`" in Config.model_fields["metric"].description
    msg = _error(_write(tmp_path, "data: {task: multilabel, target: [a, b]}\nfolds: {strategy: kfold}\n"),
                 ["metric=qwk"])
    assert "metric" in msg and "multilabel" in msg


def test_metrics_do_not_load_scikit_learn_with_the_config():
    import subprocess
    import sys

    code = "import sys, podium.config; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_normalization_auto_follows_the_weights_in_use():
    """`auto`: timm's pretrained_cfg values for a model loading weights (0.5 for tf_efficientnet_lite0,
    ImageNet's for resnet18), ImageNet's from scratch; explicit values win, each on its own."""
    from timm.models import get_pretrained_cfg

    def made(**model):
        return config_from_dict({"model": model})

    lite = get_pretrained_cfg("tf_efficientnet_lite0")
    assert lite.mean == (0.5, 0.5, 0.5)
    loaded = made(name="tf_efficientnet_lite0", pretrained_file="w.pth").augment
    assert (loaded.mean, loaded.std) == (tuple(lite.mean), tuple(lite.std))
    resnet = made(name="resnet18", pretrained_file="w.pth").augment
    assert (resnet.mean, resnet.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    scratch = made(name="tf_efficientnet_lite0").augment
    assert (scratch.mean, scratch.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    mixed = config_from_dict({"model": {"name": "tf_efficientnet_lite0", "pretrained_file": "w.pth"},
                              "augment": {"mean": [0.1, 0.2, 0.3]}}).augment
    assert (mixed.mean, mixed.std) == ((0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    # The bundle's config: the saved (resolved) one without the weights file keeps the weights' values.
    tree = made(name="tf_efficientnet_lite0", pretrained_file="w.pth").model_dump(mode="json")
    tree["model"]["pretrained_file"] = None
    assert config_from_dict(tree).augment.mean == (0.5, 0.5, 0.5)


def test_fine_tuning_defaults_fill_only_the_keys_a_config_with_weights_leaves_out():
    """With pretrained weights (a file or the hub) every FINE_TUNING key the config leaves out takes
    its fine-tuning value; a key the config sets keeps it; from scratch nothing changes."""
    from podium.config.schema import FINE_TUNING, fine_tuning_note

    def value(cfg, dotted):
        section, key = dotted.split(".")
        return getattr(getattr(cfg, section), key)

    scratch = config_from_dict({})
    for weights in ({"pretrained_file": "w.pth"}, {"pretrained": True}):
        tuned = config_from_dict({"model": {"name": "resnet18", **weights}})
        for dotted, wanted in FINE_TUNING.items():
            assert value(tuned, dotted) == wanted != value(scratch, dotted), dotted
        assert fine_tuning_note(tuned).startswith("recipe: fine-tuning defaults (")
        assert "set by the config" not in fine_tuning_note(tuned)
    assert fine_tuning_note(scratch) is None

    # A copied from-scratch config keeps its own recipe, and the fold's line says which keys it set.
    copied = config_from_dict({"model": {"pretrained_file": "w.pth"}, "scheduler": {"name": "cosine_restarts"},
                               "train": {"lr": 0.002}})
    assert (copied.scheduler.name, copied.train.lr) == ("cosine_restarts", 0.002)
    untouched = [d for d in FINE_TUNING if d not in ("scheduler.name", "train.lr")]
    assert all(value(copied, d) == FINE_TUNING[d] for d in untouched)
    assert fine_tuning_note(copied).endswith(
        "set by the config instead: train.lr 0.002, scheduler.name cosine_restarts")

    # The resolved config, saved and read again (a fold's config.yaml), is the same config.
    tuned = config_from_dict({"model": {"pretrained_file": "w.pth"}})
    assert config_from_dict(tuned.model_dump(mode="json")) == tuned
    assert config_hash(config_from_dict(tuned.model_dump(mode="json"))) == config_hash(tuned)
