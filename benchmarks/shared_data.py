"""Kaggle-style competition folders from the shared real-image sets (when ../shared exists).

    python benchmarks/shared_data.py            # writes data/hymenoptera/
    python benchmarks/shared_data.py --cifar N  # and data/cifar10/: the first N CIFAR-10 images (0: all)
    python benchmarks/shared_data.py --cifar N --with-metadata  # and data/cifar10_meta/: the same rows
                                                               # with a metadata column `kind`

hymenoptera: 397 ant/bee photographs; a fixed 20% becomes the test set (its labels kept aside in
test_labels.csv for scoring a submission), ids are file names with their extension.
"""

from __future__ import annotations

import argparse
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def _split(labels: pd.DataFrame, out: Path, test_fraction: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    test = rng.random(len(labels)) < test_fraction
    labels[~test].to_csv(out / "train.csv", index=False)
    labels.loc[test, ["id"]].to_csv(out / "test.csv", index=False)
    labels[test].to_csv(out / "test_labels.csv", index=False)
    classes = sorted(labels["label"].unique())
    sample = labels.loc[test, ["id"]].assign(label=classes[0])
    sample.to_csv(out / "sample_submission.csv", index=False)
    return out


def hymenoptera(out: Path = REPO / "data" / "hymenoptera") -> Path | None:
    src = SHARED / "hymenoptera"
    if not src.is_dir():
        return None
    if (out / "sample_submission.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        os.symlink(src / "images", out / "images")  # 47 MB of JPEGs, not copied
    return _split(pd.read_csv(src / "labels.csv", dtype={"id": str}), out, 0.2)


def cifar10(out: Path = REPO / "data" / "cifar10", limit: int | None = None) -> Path | None:
    tar = SHARED / "cifar10.tar"
    if not tar.is_file():
        return None
    if (out / "sample_submission.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar) as tf:
        tf.extractall(out.parent / ".cifar10-unpacked", filter="data")
    root = out.parent / ".cifar10-unpacked" / "cifar10"
    if not (out / "images").exists():
        os.symlink(root / "images", out / "images")
    labels = pd.read_csv(root / "labels.csv", dtype={"id": str})
    if limit:
        labels = labels.iloc[:limit]
    return _split(labels, out, 0.2)


ANIMALS = {"bird", "cat", "deer", "dog", "frog", "horse"}


def cifar10_with_metadata(cifar: Path, out: Path = REPO / "data" / "cifar10_meta", noise: float = 0.15,
                          seed: int = 0) -> Path:
    """data/cifar10's rows with a column `kind` (animal or vehicle), wrong on a random `noise` share
    of train and test rows alike: metadata that carries part of the label (data.features)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        os.symlink((cifar / "images").resolve(), out / "images")

    def kind(labels: pd.Series) -> np.ndarray:
        k = np.where(labels.isin(ANIMALS), "animal", "vehicle")
        flip = rng.random(len(k)) < noise
        k[flip] = np.where(k[flip] == "animal", "vehicle", "animal")
        return k

    train = pd.read_csv(cifar / "train.csv", dtype=str)
    train.assign(kind=kind(train["label"])).to_csv(out / "train.csv", index=False)
    test = pd.read_csv(cifar / "test.csv", dtype=str)
    truth = test.merge(pd.read_csv(cifar / "test_labels.csv", dtype=str), on="id", how="left")["label"]
    test.assign(kind=kind(truth)).to_csv(out / "test.csv", index=False)
    for name in ("sample_submission.csv", "test_labels.csv"):
        (out / name).write_bytes((cifar / name).read_bytes())
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cifar", type=int, default=None, metavar="N",
                        help="also write data/cifar10/ from the first N images (0: all 60,000)")
    parser.add_argument("--with-metadata", action="store_true",
                        help="with --cifar: also data/cifar10_meta/, the same rows with a metadata column")
    args = parser.parse_args()
    print(hymenoptera() or "no ../shared/datasets/hymenoptera")
    if args.cifar is not None:
        cifar = cifar10(limit=args.cifar or None)
        print(cifar or "no ../shared/datasets/cifar10.tar")
        if cifar and args.with_metadata:
            print(cifar10_with_metadata(cifar))
