"""`make schedule`: the lr and image size of every update, from the config alone (nothing is
trained): runs/<exp>/schedule.csv and schedule.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config
from podium.console import say
from podium.data.competition import Competition
from podium.data.splits import split_folds
from podium.evaluate.plots import plot_schedule
from podium.runs import layout
from podium.stages.current import load_checked
from podium.train.models import check_fine_tuning, create_model
from podium.train.optimizer import build_optimizer
from podium.train.schedule import lr_curve, resize_note, size_at, updates_per_epoch


def lr_scale_range(cfg: Config, comp: Competition) -> tuple[float, float]:
    """The smallest and largest `lr_scale` of the optimizer's parameter groups: (1, 1) unless
    `train.layer_decay` is set; then those of timm's layer groups, from the model built on the CPU."""
    if cfg.train.layer_decay is None:
        return 1.0, 1.0
    # The groups depend on the architecture alone: no weights are loaded (or fetched) for them.
    model = create_model(cfg.model.without_weights(), comp.num_outputs, comp.feature_width)
    check_fine_tuning(model, cfg)
    scales = [group["lr_scale"] for group in build_optimizer(model, cfg).param_groups]
    return min(scales), max(scales)


def run_schedule(cfg: Config, *, nproc: int = 1) -> Path:
    """schedule.csv and schedule.png, from the config alone, for the largest training fold;
    nothing is trained. Per update: epoch, lr (the schedule's), image_size, frozen (only the
    classifier trains), and lr_group_min / lr_group_max, the lowest and highest lr any parameter
    group gets (layer decay scales them; a frozen backbone's is 0)."""
    comp, _ = load_checked(cfg)
    sizes = split_folds(comp.train, cfg)["fold"].value_counts()
    n_train = len(comp.train) - int(sizes.min())  # the fold with the smallest validation part
    per_epoch = updates_per_epoch(n_train, cfg, nproc)
    lrs = np.asarray(lr_curve(cfg, per_epoch))
    epochs = np.arange(len(lrs)) // per_epoch
    frozen = epochs < cfg.train.freeze_epochs
    low, high = lr_scale_range(cfg, comp)  # the classifier sits in timm's top group: scale `high`
    table = pd.DataFrame({"update": np.arange(len(lrs)), "epoch": epochs, "lr": lrs,
                          "image_size": [size_at(int(e), cfg) for e in epochs], "frozen": frozen,
                          "lr_group_min": np.where(frozen, 0.0, lrs * low), "lr_group_max": lrs * high})
    out = cfg.run_dir / layout.SCHEDULE_CSV
    artifacts.write_csv(out, table)
    png = plot_schedule(table, cfg, cfg.run_dir / layout.SCHEDULE_PNG)
    say(f"wrote {out} and {png}: {len(table)} updates ({per_epoch} per epoch, {n_train} training rows, "
        f"{nproc} process(es)); sizes by epoch: {[size_at(e, cfg) for e in range(cfg.train.epochs)]}")
    if note := resize_note(cfg):
        say(note)
    return out
