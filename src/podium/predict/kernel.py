"""Test-set prediction from a bundle (bundle.py), without Accelerate, the repo or the internet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from podium import __version__, artifacts
from podium.config import config_from_dict
from podium.console import say
from podium.data.competition import Competition, image_paths, read_csv
from podium.data.datasets import ImageDataset, Normalize
from podium.data.features import FeatureEncoder, check_table
from podium.evaluate.ensemble import blend
from podium.evaluate.postprocess import Fitted
from podium.evaluate.submission import build_submission
from podium.evaluate.tta_weight import mixed
from podium.predict.forward import forward_views
from podium.predict.tta import views as tta_views
from podium.runs import layout
from podium.train.models import create_model


class _DecodeForSize:
    """Stands in for the decode-once cache: the same shrinking, done on the fly."""

    def __init__(self, size: int):
        self.size = size

    def get(self, path: str) -> np.ndarray:
        from podium.data.cache import decode_for_size

        return decode_for_size(path, self.size)


def _load(folder: Path, data_dir: Path):
    """(config, competition, meta, post-processing) of a bundle folder, for `data_dir`."""
    tree = yaml.safe_load((folder / layout.BUNDLE_CONFIG).read_text())
    tree["data"]["dir"] = str(data_dir)
    cfg = config_from_dict(tree)
    meta = json.loads((folder / layout.BUNDLE_META).read_text())
    data, id_col = cfg.data, cfg.data.id_column
    sample = read_csv(data_dir / data.sample_submission, id_col, [])
    # No test.csv in the competition: the sample submission's ids are the test rows.
    test_csv = data_dir / (data.test_csv or data.sample_submission)
    test = read_csv(test_csv, id_col, []) if data.test_csv else sample[[id_col]].copy()
    test = test.assign(path=image_paths(test, data.test_images, "data.test_images", test_csv, data_dir))
    comp = Competition(train=pd.DataFrame(), test=test, sample=sample, classes=meta["classes"], task=meta["task"],
                       data_dir=data_dir, prob_columns=meta["prob_columns"], target_columns=meta["target_columns"],
                       target_kind=meta["target_kind"], id_column=id_col)
    post = Fitted.from_json(meta["postprocess"]) if meta.get("postprocess") else None
    return cfg, comp, meta, post


def _fold_mean(folder: Path, data_dir: Path, batch_size: int | None, device) -> np.ndarray:
    """An experiment's test predictions (test rows, C): the mean of its folds, as make submit takes it."""
    cfg, comp, meta, _ = _load(folder, data_dir)
    size = cfg.train.image_size
    cache = _DecodeForSize(size) if cfg.data.cache else None
    encoders = [FeatureEncoder.from_json(tree) for tree in meta["features"]] if meta.get("features") else None
    model = create_model(cfg.model, comp.num_outputs, encoders[0].width if encoders else 0).to(device).eval()
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, device)
    views = tta_views(cfg.predict)
    weight = meta.get("tta_weight", 1.0)  # the TTA mean against the plain view, as make oof fitted it
    total = None
    if encoders:
        check_table(comp.test, encoders[0].columns, data_dir / cfg.data.test_csv)
    for k in range(meta["folds"]):
        # Each fold's own metadata scaling: the one its model was trained with.
        features = encoders[k].transform(comp.test) if encoders else None
        ds = ImageDataset(comp.test["path"], None, cfg.augment.valid, size, cfg.seed, "augment.valid",
                          augment_seed=False, cache=cache, features=features)
        loader = DataLoader(ds, batch_size=batch_size or cfg.predict.batch_size or 2 * cfg.train.batch_size,
                            num_workers=cfg.train.num_workers)
        model.load_state_dict(load_file(str(folder / layout.bundle_weights(k))))
        parts = []
        with torch.no_grad():
            for images, feats, _, _ in loader:
                _, p = forward_views(model, normalize(images), comp.task, views, feats.to(device))
                parts.append(mixed(p.mean(dim=0), p[0], weight).float().cpu())
        probs = torch.cat(parts).numpy().reshape(len(comp.test), -1).astype(np.float64)
        scale = meta["target_scales"][k]
        if scale is not None:  # a regression head's outputs, back in the target's units
            probs = probs * scale[1] + scale[0]
        total = probs if total is None else total + probs
    return total / meta["folds"]


def predict_bundle(bundle: Path, data_dir: Path, out: Path, batch_size: int | None = None) -> Path:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg, comp, _, post = _load(bundle, data_dir)
    say(f"podium {__version__} from {Path(__file__).resolve().parent}; on {device}")
    spec_path = bundle / layout.BLEND_JSON
    if spec_path.is_file():  # a blend: every member predicts, then the blend's weights join them
        spec = json.loads(spec_path.read_text())
        parts = [_fold_mean(bundle / layout.BUNDLE_MEMBERS / m, data_dir, batch_size, device) for m in spec["members"]]
        probs = blend(parts, spec["weights"], spec["method"])
    else:
        probs = _fold_mean(bundle, data_dir, batch_size, device)
    mean = pd.DataFrame(probs, index=comp.test[cfg.data.id_column].to_numpy(), columns=comp.prob_columns)
    sub = build_submission(comp, cfg, mean, post)
    artifacts.write_csv(out, sub)
    say(f"wrote {out}: {len(sub)} rows")
    return out
