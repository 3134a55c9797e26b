"""`make folds`: runs/<exp>/folds.csv, the cross-validation split (data/splits.py), written once
and kept while the config keys that decide it and train.csv are unchanged."""

from __future__ import annotations

from pathlib import Path

from podium import artifacts
from podium.config import Config, config_hash
from podium.console import say
from podium.data.competition import Competition
from podium.data.splits import split_folds
from podium.runs import layout, records
from podium.stages.current import load_checked


def run_folds(cfg: Config, comp: Competition | None = None) -> Path:
    if comp is None:
        comp, _ = load_checked(cfg)
    out = layout.folds_csv(cfg)
    inputs = {"config": config_hash(cfg, layout.FOLD_SECTIONS),
              "train_csv": artifacts.file_hash(cfg.data_dir / cfg.data.train_csv)}
    if cfg.folds.groups_csv:  # the groups decide the split as much as train_csv does
        inputs["groups_csv"] = artifacts.file_hash(cfg.folds.groups_csv)
    if records.is_up_to_date(cfg.run_dir, layout.FOLDS_STAGE, inputs):
        say(f"{out} is up to date")
        return out
    folds = split_folds(comp.train, cfg)
    artifacts.write_csv(out, folds)
    records.mark_done(cfg.run_dir, layout.FOLDS_STAGE, inputs, [out])
    sizes = folds["fold"].value_counts().sort_index().tolist()
    say(f"wrote {out}: {cfg.folds.n_splits} folds ({cfg.folds.strategy}), rows per fold {sizes}")
    return out
