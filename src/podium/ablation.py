"""`make ablate`: the same folds trained with no tricks, all five, and all five minus each one.

Each variant is an experiment of its own under runs/<exp>/ablation/<variant>/, made from the
config plus the overrides below, so a finished variant is skipped when ablate runs again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import artifacts
from .config import Config, config_from_dict
from .errors import PodiumError

# The one switch that turns each trick off.
OFF = {
    "mixup": {"mix": {"mixup_alpha": 0.0}},
    "cutmix": {"mix": {"cutmix_alpha": 0.0}},
    "label_smoothing": {"loss": {"label_smoothing": 0.0}},
    "cosine_restarts": {"scheduler": {"name": "constant"}},
    "progressive_resizing": {"resize": {"enabled": False}},
}


def _merge(tree: dict, changes: dict) -> dict:
    out = dict(tree)
    for key, value in changes.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def variants(cfg: Config) -> dict[str, Config]:
    """{'none', 'all', 'no_<trick>' ...}: configs that differ from `cfg` only in trick switches."""
    base = cfg.model_dump(mode="json")
    base["runs_dir"] = str(cfg.run_dir / "ablation")
    changes = {"none": {}, "all": {}}
    for trick, off in OFF.items():
        changes["none"] = _merge(changes["none"], off)
    for trick, off in OFF.items():
        changes[f"no_{trick}"] = off
    return {name: config_from_dict(_merge(base, {**change, "experiment": name}))
            for name, change in changes.items()}


def run_ablation(cfg: Config, folds: list[int] | None = None, nproc: int | None = None) -> pd.DataFrame:
    from .data import encode_targets
    from .metrics import HIGHER_IS_BETTER, score
    from .plots import plot_ablation
    from .stages import load_checked, run_train

    folds = list(range(cfg.folds.n_splits)) if not folds else folds
    bad = [k for k in folds if not 0 <= k < cfg.folds.n_splits]
    if bad:
        raise PodiumError(f"FOLDS: fold(s) {bad} do not exist (folds.n_splits={cfg.folds.n_splits})")
    comp, _ = load_checked(cfg)
    id_col = cfg.data.id_column
    truth = pd.Series(list(encode_targets(comp.train, comp.classes, comp.task, cfg.data.target_columns)),
                      index=comp.train[id_col].to_numpy())
    rows = []
    for name, vcfg in variants(cfg).items():
        scores, seconds = [], 0.0
        for k in folds:
            print(f"== ablation: {name}, fold {k} ==", flush=True)
            code = run_train(vcfg, k, nproc=nproc)
            if code != 0:
                raise PodiumError(f"ablation variant '{name}' fold {k}: training exited with code {code}")
            fold_dir = vcfg.run_dir / f"fold{k}"
            oof = pd.read_csv(fold_dir / "oof.csv", dtype={id_col: str})
            y = np.stack(truth.loc[oof[id_col]].to_numpy())
            probs = oof[comp.prob_columns].to_numpy(dtype=np.float64)
            scores.append(score(cfg.metric, y, probs[:, 0] if comp.task == "binary" else probs, comp.task))
            seconds += float(pd.read_csv(fold_dir / "history.csv")["seconds"].sum())
        rows.append({"variant": name, "cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores)),
                     "folds": ",".join(map(str, folds)), "wall_seconds": round(seconds, 1)})
    table = pd.DataFrame(rows)
    all_score = float(table.loc[table["variant"] == "all", "cv_mean"].iloc[0])
    sign = 1 if HIGHER_IS_BETTER[cfg.metric] else -1
    # What each trick is worth: the score with all five minus the score without it (positive = helps).
    table["gain_of_trick"] = [sign * (all_score - m) if v.startswith("no_") else np.nan
                              for v, m in zip(table["variant"], table["cv_mean"])]
    out = cfg.run_dir / "ablation.csv"
    artifacts.write_csv(out, table)
    png = plot_ablation(table, cfg.metric, HIGHER_IS_BETTER[cfg.metric], cfg.run_dir / "ablation.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    print(f"wrote {out} and {png}", flush=True)
    return table
