"""What test-time augmentation is worth on a finished experiment, without retraining it:
`.venv/bin/python benchmarks/tta.py --run runs/<experiment>`.

Every fold's saved weights (fold<k>/model.safetensors) predict the fold's held-out rows under each
TTA setting below, exactly as the fold's finish does (the validation transforms at the full size,
float32, the views of predict/tta.py); the OOF of all folds is scored by the run's metric and the
log loss. Each view is predicted once and shared by the settings that use it. Prints a table and
writes runs/<experiment>/tta.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from podium import artifacts
from podium.config.sections import PredictConfig
from podium.data.competition import load_competition
from podium.data.datasets import ImageDataset, Normalize
from podium.data.features import FeatureEncoder
from podium.evaluate.metrics import score
from podium.predict.forward import logits_of, probabilities
from podium.predict.kernel import _DecodeForSize
from podium.predict.tta import views
from podium.runs import layout
from podium.runs.finished import saved_config
from podium.train.models import create_model

SETTINGS = {
    "none": PredictConfig(),
    "hflip": PredictConfig(tta=["hflip"]),
    "hflip, vflip, transpose (8 views)": PredictConfig(tta=["hflip", "vflip", "transpose"]),
    "hflip at scales 1.0 and 1.15": PredictConfig(tta=["hflip"], tta_scales=[1.0, 1.15]),
    "hflip, five_crop": PredictConfig(tta=["hflip", "five_crop"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="runs/<experiment>: a trained experiment")
    args = parser.parse_args()
    run = Path(args.run)
    cfg = saved_config(run.parent, run.name)
    comp = load_competition(cfg)
    id_col, size = cfg.data.id_column, cfg.train.image_size
    folds = pd.read_csv(run / layout.FOLDS_CSV, dtype={id_col: str}).set_index(id_col)["fold"]
    train = comp.train.set_index(comp.train[id_col].astype(str))
    own = views(cfg.predict)  # what the run's oof.csv was predicted with: predicted here too, as a check
    union = sorted({v for s in [*SETTINGS.values(), cfg.predict] for v in views(s)}, key=lambda v: v.name)
    model = create_model(cfg.model.without_weights(), comp.num_outputs, comp.feature_width).eval()
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, "cpu")
    cache = _DecodeForSize(size) if cfg.data.cache else None
    probs = {v: [] for v in union}
    ids, seconds = [], {v: 0.0 for v in union}
    for k in range(cfg.folds.n_splits):
        rows = train.loc[folds.index[folds.to_numpy() == k]]
        model.load_state_dict(load_file(str(run / layout.fold_name(k) / layout.WEIGHTS)))
        encoding = layout.fold_record(cfg, k).get("info", {}).get("features")  # the fold's metadata scaling
        features = FeatureEncoder.from_json(encoding).transform(rows) if encoding else None
        ds = ImageDataset(rows["path"], None, cfg.augment.valid, size, cfg.seed, "augment.valid", augment_seed=False,
                          cache=cache, features=features)
        loader = DataLoader(ds, batch_size=cfg.predict.batch_size or 2 * cfg.train.batch_size,
                            num_workers=cfg.train.num_workers)
        with torch.no_grad():
            for images, features, _, _ in loader:
                x = normalize(images)
                for v in union:
                    start = time.time()
                    logits = logits_of(model, v.apply(x), features)
                    probs[v].append(probabilities(logits, comp.task).numpy().astype(np.float64))
                    seconds[v] += time.time() - start
        ids += list(rows.index)
        print(f"fold {k}: {len(rows)} rows, {len(union)} views")
    y = comp.encode(train.loc[ids].reset_index(drop=True))
    per_view = {v: np.concatenate(p).reshape(len(ids), -1) for v, p in probs.items()}
    results = []
    for name, setting in SETTINGS.items():
        chosen = views(setting)
        oof = np.mean([per_view[v] for v in chosen], axis=0)
        results.append({"tta": name, "views": len(chosen), cfg.metric: score(cfg.metric, y, oof, comp.task),
                        "log_loss": score("log_loss", y, oof, comp.task),
                        "seconds": round(sum(seconds[v] for v in chosen), 1)})
    saved = pd.read_csv(run / layout.OOF_CSV, dtype={id_col: str}).set_index(id_col).loc[ids, comp.prob_columns]
    again = np.mean([per_view[v] for v in own], axis=0)
    diff = float(np.abs(saved.to_numpy() - again).max())
    print(f"the run's own TTA ({len(own)} views) predicted again: largest difference from its oof.csv {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("the re-prediction does not reproduce the run's oof.csv: the figures below would not be its")
    table = pd.DataFrame(results)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    artifacts.write_json(run / layout.TTA_JSON, {"run": str(run), "metric": cfg.metric, "rows": len(ids),
                                            "results": results})


if __name__ == "__main__":
    main()
