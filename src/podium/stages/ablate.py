"""`make ablate`: the same folds trained with no tricks, all five, and all five minus each one.

Each variant is an experiment of its own under runs/<exp>/ablation/<variant>/, made from the
config plus the overrides below, so a finished variant is skipped when ablate runs again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config, config_from_dict
from podium.config.schema import fine_tuning_values, scratch_default
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.cv import fold_score
from podium.evaluate.metrics import higher_is_better
from podium.evaluate.plots import plot_ablation
from podium.runs import layout
from podium.stages.current import load_checked
from podium.stages.train import run_train

SCRATCH_RECIPE = "scratch_recipe"  # the variant with the from-scratch defaults instead of FINE_TUNING's

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


def scratch_recipe(cfg: Config) -> dict:
    """With pretrained weights: the fine-tuning defaults in force (FINE_TUNING's) set back to their
    from-scratch defaults, so the ablation measures what the fine-tuning recipe is worth. Empty
    without weights, or when the config sets every one of those keys itself."""
    out: dict = {}
    for dotted, (_, tuned) in fine_tuning_values(cfg).items():
        if tuned:
            section, key = dotted.split(".")
            out = _merge(out, {section: {key: scratch_default(dotted)}})
    return out


def variants(cfg: Config) -> dict[str, Config]:
    """{'none', 'all', 'no_<trick>' ..., and with pretrained weights 'scratch_recipe'}: configs that
    differ from `cfg` only in trick switches (or in the fine-tuning recipe)."""
    base = cfg.model_dump(mode="json")
    base["runs_dir"] = str(cfg.run_dir / layout.ABLATION_DIR)
    changes = {"none": {}, "all": {}}
    for off in OFF.values():
        changes["none"] = _merge(changes["none"], off)
    for trick, off in OFF.items():
        changes[f"no_{trick}"] = off
    if recipe := scratch_recipe(cfg):
        changes[SCRATCH_RECIPE] = recipe
    return {name: config_from_dict(_merge(base, {**change, "experiment": name}))
            for name, change in changes.items()}


def run_ablation(cfg: Config, folds: list[int] | None = None, *, nproc: int | None = None) -> pd.DataFrame:
    """Train every variant on `folds` (None: all) and tabulate each one's CV score and time."""
    folds = list(range(cfg.folds.n_splits)) if folds is None else folds
    comp, _ = load_checked(cfg)
    rows = []
    for name, vcfg in variants(cfg).items():
        scores, seconds = [], 0.0
        for k in folds:
            say(f"== ablation: {name}, fold {k} ==")
            code = run_train(vcfg, k, nproc=nproc)
            if code != 0:
                raise PodiumError(f"ablation variant '{name}' fold {k}: training exited with code {code}")
            scores.append(fold_score(vcfg, comp, k))
            seconds += float(pd.read_csv(layout.fold_dir(vcfg, k) / layout.HISTORY_CSV)["seconds"].sum())
        rows.append({"variant": name, "cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores)),
                     "folds": ",".join(map(str, folds)), "wall_seconds": round(seconds, 1)})
    table = pd.DataFrame(rows)
    all_score = float(table.loc[table["variant"] == "all", "cv_mean"].iloc[0])
    sign = 1 if higher_is_better(cfg.metric) else -1
    # What each trick (and the fine-tuning recipe) is worth: the score with it minus the score
    # without it (positive = helps).
    table["gain_of_trick"] = [sign * (all_score - m) if v.startswith("no_") or v == SCRATCH_RECIPE else np.nan
                              for v, m in zip(table["variant"], table["cv_mean"], strict=True)]
    out = cfg.run_dir / layout.ABLATION_CSV
    artifacts.write_csv(out, table)
    png = plot_ablation(table, cfg.metric, cfg.run_dir / layout.ABLATION_PNG,
                        higher_is_better=higher_is_better(cfg.metric))
    say(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), f"wrote {out} and {png}")
    return table
