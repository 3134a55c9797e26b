"""Charts as PNG files (matplotlib, headless), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from podium import artifacts  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return artifacts.write_bytes(path, buf.getvalue())


def plot_schedule(table: pd.DataFrame, cfg, path: Path) -> Path:
    """The lr and the training image size against the optimizer update; the range of the
    parameter groups' lr (layer decay) shaded, and the epochs with a frozen backbone marked."""
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(table["update"], table["lr"], color="tab:blue", lw=1.5, label="lr (schedule)")
    if "lr_group_min" in table and not (table["lr_group_min"] == table["lr"]).all():
        ax.fill_between(table["update"], table["lr_group_min"], table["lr_group_max"], step="post", color="tab:blue",
                        alpha=0.15, lw=0, label="lr of the parameter groups (min to max)")
    if "frozen" in table and table["frozen"].any():
        ax.axvspan(0, int(table["frozen"].sum()), color="0.6", alpha=0.2, lw=0,
                   label="backbone frozen: only the classifier trains")
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(loc="upper right", fontsize=8)
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
    return save_figure(fig, path)


def plot_ablation(table: pd.DataFrame, metric: str, path: Path, *, higher_is_better: bool) -> Path:
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
    return save_figure(fig, path)


def plot_history(history: pd.DataFrame, metric: str, path: Path) -> Path:
    """One fold's training curves against the epoch: losses, the metric, lr and image size."""
    epoch = history["epoch"] + 1
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(epoch, history["train_loss"], label="train (mixed, smoothed targets)")
    axes[0].plot(epoch, history["valid_loss"], label="valid")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(epoch, history[metric], color="tab:green", marker="o", ms=3)
    axes[1].set_title(f"valid {metric}")
    axes[2].plot(epoch, history["lr"], color="tab:blue")
    axes[2].set_title("lr (end of epoch) and image size")
    size_ax = axes[2].twinx()
    size_ax.step(epoch, pd.to_numeric(history["image_size"], errors="coerce"), where="mid", color="tab:orange")
    size_ax.set_ylabel("px", color="tab:orange")
    for ax in axes:
        ax.set_xlabel("epoch")
    return save_figure(fig, path)


def plot_fold_scores(cv: dict, path: Path) -> Path:
    scores = cv["fold_scores"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(scores)), scores, color="tab:blue", alpha=0.8)
    ax.axhline(cv["mean"], color="tab:red", lw=1, label=f"mean {cv['mean']:.4f} ± {cv['std']:.4f}")
    ax.axhspan(cv["mean"] - cv["std"], cv["mean"] + cv["std"], color="tab:red", alpha=0.1)
    ax.set_xticks(range(len(scores)), [f"fold {k}" for k in range(len(scores))])
    lo, hi = min(scores), max(scores)
    pad = max((hi - lo) * 0.5, 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(cv["metric"])
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def row_shares(matrix):
    """A confusion matrix normalized per true class: each row sums to 1 (a class never seen: 0s).
    The diagonal is each class's recall, whatever the class sizes."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)


def plot_confusion(matrix, classes: list, path: Path) -> Path:
    """Each cell: the share of the true class (row) predicted as the column, and its count."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.65 * n, 1.0 + 0.6 * n))
    rows = row_shares(matrix)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{rows[i, j]:.2f}\n{matrix[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(n), [f"{c} ({matrix[i].sum()})" for i, c in enumerate(classes)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (rows)")
    ax.set_title("OOF confusion matrix, normalized per true class\n(share of the row; count below)", fontsize=9)
    return save_figure(fig, path)


def plot_roc_pr(y, p, path: Path) -> Path:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    prec, rec, _ = precision_recall_curve(y, p)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.4f}")
    axes[0].plot([0, 1], [0, 1], color="0.7", ls="--")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="OOF ROC")
    axes[0].legend(loc="lower right")
    axes[1].plot(rec, prec)
    axes[1].set(xlabel="recall", ylabel="precision", title="OOF precision-recall")
    return save_figure(fig, path)


def plot_reliability(confidence, correct, path: Path, bins: int = 10) -> Path:
    """Mean accuracy against mean confidence per confidence bin (a calibrated model follows the diagonal)."""
    import numpy as np

    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    conf, acc, count = [], [], []
    for b in range(bins):
        sel = which == b
        if sel.any():
            conf.append(confidence[sel].mean())
            acc.append(correct[sel].mean())
            count.append(int(sel.sum()))
    ece = sum(c * abs(a - f) for c, a, f in zip(count, acc, conf, strict=True)) / max(1, sum(count))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="0.7", ls="--")
    ax.plot(conf, acc, marker="o")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"OOF reliability (ECE {ece:.3f})")
    return save_figure(fig, path)


def plot_lr_find(table: pd.DataFrame, lowest: float, suggestion: float, path: Path) -> Path:
    """make lr-find: each update's loss, its centered average (what the suggestion reads) and the
    moving average (what stops the ramp) against the lr (log scale), the lowest point and the
    suggestion marked."""
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(table["lr"], table["loss"], color="0.7", lw=0.8, label="loss of the update's batch")
    ax.plot(table["lr"], table["centered_loss"], color="tab:blue", lw=1.8, label="centered average")
    ax.plot(table["lr"], table["moving_average"], color="tab:orange", lw=1, ls="--",
            label="moving average (stops the ramp; lags)")
    ax.axvline(lowest, color="tab:red", ls=":", lw=1.2, label=f"lowest centered average: lr {lowest:.2g}")
    ax.axvline(suggestion, color="tab:green", ls="--", lw=1.5, label=f"suggested train.lr {suggestion:.2g}")
    ax.set_xscale("log")
    # the divergence at the end would squash the useful range: cap the view at twice the first loss
    curve = table["centered_loss"]
    ax.set_ylim(float(table["loss"].min()) * 0.9, max(float(curve.iloc[0]) * 2, float(curve.min()) * 1.5))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("lr range test: the loss against an exponentially growing lr")
    return save_figure(fig, path)
