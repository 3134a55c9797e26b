"""`make ablate`: the same folds trained with no tricks, all five, and all five minus each one.

Each variant is an experiment of its own under runs/<exp>/ablation/<variant>/, made from the
config plus the overrides below, so a finished variant is skipped when ablate runs again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import artifacts, runs
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
    for off in OFF.values():
        changes["none"] = _merge(changes["none"], off)
    for trick, off in OFF.items():
        changes[f"no_{trick}"] = off
    return {name: config_from_dict(_merge(base, {**change, "experiment": name}))
            for name, change in changes.items()}


def run_ablation(cfg: Config, folds: list[int] | None = None, nproc: int | None = None) -> pd.DataFrame:
    from .metrics import higher_is_better, score
    from .plots import plot_ablation
    from .stages import load_checked, run_train

    folds = list(range(cfg.folds.n_splits)) if not folds else folds
    bad = [k for k in folds if not 0 <= k < cfg.folds.n_splits]
    if bad:
        raise PodiumError(f"FOLDS: fold(s) {bad} do not exist (folds.n_splits={cfg.folds.n_splits})")
    comp, _ = load_checked(cfg)
    id_col = cfg.data.id_column
    truth = pd.Series(list(comp.encode(comp.train)),
                      index=comp.train[id_col].to_numpy())
    rows = []
    for name, vcfg in variants(cfg).items():
        scores, seconds = [], 0.0
        for k in folds:
            print(f"== ablation: {name}, fold {k} ==", flush=True)
            code = run_train(vcfg, k, nproc=nproc)
            if code != 0:
                raise PodiumError(f"ablation variant '{name}' fold {k}: training exited with code {code}")
            oof = runs.read_fold(vcfg, k, runs.OOF_CSV, comp.prob_columns)
            y = np.stack(truth.loc[oof.ids].to_numpy())
            scores.append(score(cfg.metric, y, oof.probs, comp.task))
            seconds += float(pd.read_csv(runs.fold_dir(vcfg, k) / runs.HISTORY_CSV)["seconds"].sum())
        rows.append({"variant": name, "cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores)),
                     "folds": ",".join(map(str, folds)), "wall_seconds": round(seconds, 1)})
    table = pd.DataFrame(rows)
    all_score = float(table.loc[table["variant"] == "all", "cv_mean"].iloc[0])
    sign = 1 if higher_is_better(cfg.metric) else -1
    # What each trick is worth: the score with all five minus the score without it (positive = helps).
    table["gain_of_trick"] = [sign * (all_score - m) if v.startswith("no_") else np.nan
                              for v, m in zip(table["variant"], table["cv_mean"], strict=True)]
    out = cfg.run_dir / "ablation.csv"
    artifacts.write_csv(out, table)
    png = plot_ablation(table, cfg.metric, higher_is_better(cfg.metric), cfg.run_dir / "ablation.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    print(f"wrote {out} and {png}", flush=True)
    return table
