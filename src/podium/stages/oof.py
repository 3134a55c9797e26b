"""`make oof`: every fold's out-of-fold predictions joined (each train row exactly once) and
scored: runs/<exp>/oof.csv, cv.json, postprocess.json and the CV table (evaluate/cv.py). Every
fold must be trained and current for this config (stages/current.py)."""

from __future__ import annotations

from podium.config import Config
from podium.console import say
from podium.evaluate.cv import format_cv
from podium.runs import layout
from podium.stages.current import current_oof


def run_oof(cfg: Config, *, show: bool = True) -> dict:
    """cv.json's content; skipped (and said so) when the folds are unchanged since it was written."""
    cv, up_to_date = current_oof(cfg)
    if show:
        if up_to_date:
            say(f"{layout.cv_json(cfg)} is up to date")
        say(format_cv(cv))
    return cv
