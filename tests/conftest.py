"""Small competitions written into tmp folders, and tiny configs that train in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from podium.config import Config, config_from_dict

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def pattern_image(kind: int, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """A grayscale image whose class is visible in any colour mode: stripes one way or the other,
    or a checkerboard, at a random phase, with noise."""
    yy, xx = np.mgrid[0:size, 0:size]
    period, phase = int(rng.integers(4, 7)), int(rng.integers(0, 6))
    if kind == 0:
        img = ((yy + phase) // (period // 2)) % 2
    elif kind == 1:
        img = ((xx + phase) // (period // 2)) % 2
    else:
        img = (((yy + phase) // (period // 2)) + ((xx + phase) // (period // 2))) % 2
    img = img * 180 + 40 + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_competition(root: Path, n_train: int = 90, n_test: int = 30, classes=("a", "b", "c"), seed: int = 0,
                      id_column: str = "id", target: str = "label", ext: str = "png",
                      probability_sample: bool = False) -> tuple[Path, pd.DataFrame]:
    """A Kaggle-style folder with pattern images; returns the folder and the test labels."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    frames = {}
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split).mkdir(exist_ok=True)
        kinds = np.arange(n) % len(classes)
        rng.shuffle(kinds)
        ids = [f"{split}{i:04d}" for i in range(n)]
        for i, k in zip(ids, kinds, strict=True):
            cv2.imwrite(str(root / split / f"{i}.{ext}"), pattern_image(int(k), rng))
        frames[split] = pd.DataFrame({id_column: ids, target: [classes[k] for k in kinds]})
    frames["train"].to_csv(root / "train.csv", index=False)
    frames["test"][[id_column]].to_csv(root / "test.csv", index=False)
    sample = frames["test"][[id_column]].copy()
    if probability_sample:
        for c in classes:
            sample[str(c)] = 1.0 / len(classes)
    else:
        sample[target] = classes[0]
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root, frames["test"]


def tiny_config(data_dir: Path, runs_dir: Path, **sections) -> Config:
    """A config that trains a 100k-parameter model for one epoch at 16 px, no loader workers, in
    float32 and the default memory format (what `auto` picks depends on the machine's timing)."""
    tree = {
        "experiment": "t",
        "runs_dir": str(runs_dir),
        "data": {"dir": str(data_dir), "train_images": "train/{id}.png", "test_images": "test/{id}.png"},
        "folds": {"n_splits": 3},
        "model": {"name": "test_efficientnet"},
        "train": {"epochs": 1, "batch_size": 16, "image_size": 16, "num_workers": 0, "lr": 0.01,
                  "precision": "no", "channels_last": "off"},
        "scheduler": {"warmup_epochs": 0},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            tree.setdefault(key, {}).update(value)
        else:
            tree[key] = value
    return config_from_dict(tree)


def write_config(cfg: Config, path: Path) -> Path:
    import yaml

    tree = cfg.model_dump(mode="json")
    tree.pop("experiment")
    path.write_text(yaml.safe_dump(tree))
    return path


def podium(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the podium CLI in a subprocess, as the Makefile does."""
    return subprocess.run([sys.executable, "-m", "podium.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def competition(tmp_path):
    root, _ = write_competition(tmp_path / "comp")
    return root


def ok(out: subprocess.CompletedProcess) -> str:
    """The stdout of a podium call that must succeed; its output tails when it did not."""
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state (its precision among it) per process: a test that trains a fold in
    this process starts and ends with none, whatever other in-process tests set."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)
