"""The embedded demo competition, from scikit-learn's bundled digits (1,797 real 8x8 scans)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from podium.console import say

DEMO_DIR = Path("data/demo")
TEST_FRACTION = 0.2
SEED = 0


def write_demo(out: Path = DEMO_DIR) -> Path:
    """Write a Kaggle-style folder: train/ and test/ PNGs, train.csv, test.csv, sample_submission.csv.

    Built in a temporary folder and renamed into place, so a half-written demo never exists.
    """
    from sklearn.datasets import load_digits

    out = Path(out)
    if (out / "sample_submission.csv").is_file():
        return out
    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    labels = digits.target
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(labels))
    n_test = int(round(len(labels) * TEST_FRACTION))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    # Ids are shuffled numbers, so neither the id nor the file order carries the label.
    ids = rng.permutation(len(labels)) + 10000

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for split, idx in (("train", train_idx), ("test", test_idx)):
            (tmp / split).mkdir()
            for i in idx:
                cv2.imwrite(str(tmp / split / f"{ids[i]}.png"), images[i])  # 8-bit grayscale PNG
        pd.DataFrame({"id": ids[train_idx], "label": labels[train_idx]}).to_csv(tmp / "train.csv", index=False)
        pd.DataFrame({"id": ids[test_idx]}).to_csv(tmp / "test.csv", index=False)
        pd.DataFrame({"id": ids[test_idx], "label": 0}).to_csv(tmp / "sample_submission.csv", index=False)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_demo_data(cfg) -> None:
    """The demo competition is written on first use of a config that points at it, so a fresh
    clone runs with no download (`cfg`: the run's Config)."""
    if Path(cfg.data.dir) == DEMO_DIR and not (DEMO_DIR / "sample_submission.csv").is_file():
        say(f"writing the demo competition to {DEMO_DIR}/")
        write_demo(DEMO_DIR)
