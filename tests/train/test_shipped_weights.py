"""The ImageNet weights podium's configs fine-tune (the `weights` extra, part of `dev`), loaded the
way configs/hymenoptera_pretrained.yaml names them: from the installed package, mapped by order,
every tensor but the new classifier loaded, and worth more than a random start with the same
recipe from the first epoch on."""

import pandas as pd
import pytest
import yaml

from podium.config.schema import FINE_TUNING
from podium.data.demo import write_demo

from conftest import REPO, ok, podium

SHIPPED = REPO / "configs" / "hymenoptera_pretrained.yaml"


@pytest.mark.slow  # two folds of EfficientNet-Lite0 in subprocesses
def test_the_shipped_imagenet_weights_beat_a_random_start_in_the_first_epoch(tmp_path):
    data = write_demo(tmp_path / "digits")  # 1,437 real 8x8 scans, nothing like ImageNet's photographs
    model = yaml.safe_load(SHIPPED.read_text())["model"]
    common = {
        "seed": 0, "runs_dir": str(tmp_path / "runs"), "folds": {"n_splits": 5},
        "data": {"dir": str(data), "train_images": "train/{id}.png", "test_images": "test/{id}.png"},
        # one epoch, no warmup: the first epoch's updates at the recipe's lr
        "train": {"epochs": 1, "batch_size": 16, "image_size": 64, "num_workers": 0, "precision": "no",
                  "channels_last": "off"},
        "scheduler": {"warmup_epochs": 0},
    }
    # The same recipe without the weights (FINE_TUNING's values written out): only the weights differ.
    scratch = {**common, "model": {"name": model["name"]}}
    for dotted, value in FINE_TUNING.items():
        section, key = dotted.split(".")
        scratch[section] = {**scratch.get(section, {}), key: value}
    first = {}
    for name, tree in (("tuned", {**common, "model": model}), ("scratch", scratch)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(tree))
        ok(podium("folds", "--config", str(config)))
        out = ok(podium("train", "--config", str(config), "--fold", "0", timeout=600))
        first[name] = pd.read_csv(tmp_path / "runs" / name / "fold0" / "history.csv")["accuracy"].iloc[0]
        if name == "tuned":
            assert "(294 of 296 tensors, a new classifier)" in out
            assert "input normalized with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]" in out
            assert "recipe: fine-tuning defaults (" in out
    assert first["tuned"] > first["scratch"] + 0.2, first
