"""`make leaderboard`: every experiment's cv.json in one table, best first."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from podium.console import say
from podium.evaluate.metrics import METRICS, higher_is_better
from podium.runs import layout


def leaderboard(runs_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(runs_dir).glob(f"*/{layout.CV_JSON}")):
        try:
            cv = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        run = path.parent
        done = sum(1 for k in range(cv["folds"]) if layout.is_trained(run, k))
        blend = cv.get("blend")
        rows.append({
            "experiment": cv.get("experiment", run.name), "metric": cv["metric"],
            "cv_mean": cv["mean"], "cv_std": cv["std"], "oof_score": cv["score"],
            "folds_done": f"blend of {len(blend['members'])}" if blend else f"{done}/{cv['folds']}",
            "date": dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
        })
    table = pd.DataFrame(rows, columns=["experiment", "metric", "cv_mean", "cv_std", "oof_score", "folds_done",
                                        "date"])
    if table.empty:
        return table
    # Best first within each metric: higher-is-better metrics sorted down, log_loss up. A metric
    # no longer known (a cv.json from an older podium) sorts as higher-is-better.
    table["_key"] = [s if m in METRICS and not higher_is_better(m) else -s
                     for m, s in zip(table["metric"], table["oof_score"], strict=True)]
    return table.sort_values(["metric", "_key"]).drop(columns="_key").reset_index(drop=True)


def print_leaderboard(runs_dir: Path) -> pd.DataFrame:
    table = leaderboard(runs_dir)
    if table.empty:
        say(f"no experiments with a cv.json under {runs_dir}/ yet (make oof writes one)")
        return table
    shown = table.assign(cv=[f"{m:.5f} ± {s:.5f}" for m, s in zip(table["cv_mean"], table["cv_std"], strict=True)],
                         oof=[f"{v:.5f}" for v in table["oof_score"]])
    say(shown[["experiment", "metric", "cv", "oof", "folds_done", "date"]].to_string(index=False))
    return table
