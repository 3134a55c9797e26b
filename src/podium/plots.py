"""Charts as PNG files (matplotlib, headless), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import artifacts  # noqa: E402


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return artifacts.write_bytes(path, buf.getvalue())


def plot_schedule(table: pd.DataFrame, cfg, path: Path) -> Path:
    """The lr and the training image size against the optimizer update."""
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(table["update"], table["lr"], color="tab:blue", lw=1.5)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("learning rate", color="tab:blue")
    size_ax = ax.twinx()
    size_ax.step(table["update"], table["image_size"], where="post", color="tab:orange", lw=1.5)
    size_ax.set_ylabel("training image size (px)", color="tab:orange")
    per_epoch = int((table["epoch"] == 0).sum())
    for e in range(1, int(table["epoch"].max()) + 1):
        ax.axvline(e * per_epoch, color="0.9", lw=0.5, zorder=0)
    ax.set_title(f"{cfg.experiment}: {cfg.scheduler.name} lr, "
                 f"{'progressive' if cfg.resize.enabled else 'fixed'} image size ({per_epoch} updates/epoch)")
    return _save(fig, path)


def plot_ablation(table: pd.DataFrame, metric: str, higher_is_better: bool, path: Path) -> Path:
    """Each variant's CV score (mean +- std over folds), with the all-tricks score as a line."""
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(table) + 1.5))
    y = range(len(table))
    ax.barh(list(y), table["cv_mean"], xerr=table["cv_std"], color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(list(y), table["variant"])
    ax.invert_yaxis()
    full = table.loc[table["variant"] == "all", "cv_mean"]
    if len(full):
        ax.axvline(float(full.iloc[0]), color="tab:red", ls="--", lw=1, label="all five")
        ax.legend(loc="lower right")
    lo = (table["cv_mean"] - table["cv_std"]).min()
    hi = (table["cv_mean"] + table["cv_std"]).max()
    pad = max((hi - lo) * 0.15, 1e-3)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(f"CV {metric} ({'higher' if higher_is_better else 'lower'} is better), mean ± std over folds")
    ax.set_title("ablation: 'no_X' is all five tricks minus X")
    return _save(fig, path)
