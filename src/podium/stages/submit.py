"""`make submit`: the folds' test predictions averaged, post-processed as make oof fitted it, in
the sample submission's shape: submissions/<exp>.csv (FOLDS=0,2: a partial one, named for them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podium import artifacts
from podium.config import Config, config_hash
from podium.console import say
from podium.data.competition import Competition
from podium.evaluate.cv import oof_predictions, postprocess_kind, read_postprocess
from podium.evaluate.postprocess import Fitted, fit
from podium.evaluate.submission import build_submission
from podium.runs import layout, records
from podium.stages.current import load_current
from podium.stages.oof import run_oof


def submission_postprocess(cfg: Config, comp: Competition, folds: list[int]) -> Fitted | None:
    """What the submission applies: the run's postprocess.json (make oof, run here when it is not
    up to date, which fits the TTA weight too) for all folds; for some folds, the same fit on those
    folds' OOF rows."""
    kind = postprocess_kind(cfg, comp)
    if len(folds) == cfg.folds.n_splits:
        run_oof(cfg)  # the TTA weight too (postprocess.tta_weight) is fitted there
        return read_postprocess(cfg) if kind != "none" else None
    if kind == "none":
        return None
    rows, probs, _ = oof_predictions(cfg, comp, folds)
    return fit(kind, comp.encode(comp.train)[rows], probs, cfg.metric, comp.task, comp.classes)


@dataclass
class Planned:
    """What `make submit` would write for a config and folds, and the record that vouches for it."""

    comp: Competition
    used: list[int]
    out: Path
    stage: str
    inputs: dict[str, str]
    post: Fitted | None
    weight: float
    what: str

    def is_current(self, cfg: Config) -> bool:
        return records.is_up_to_date(cfg.run_dir, self.stage, self.inputs)


def plan_submission(cfg: Config, folds: list[int] | None = None) -> Planned:
    """Every fold used must be trained and current for this config (refused otherwise)."""
    n = cfg.folds.n_splits
    used = list(range(n)) if folds is None else sorted(folds)
    comp = load_current(cfg, used)
    paths = [layout.fold_dir(cfg, k) / layout.TEST_CSV for k in used]
    post = submission_postprocess(cfg, comp, used)  # runs make oof for all folds: the TTA weight is then current
    # make oof's TTA weight, fitted on every fold's OOF; a partial submission takes the TTA mean, as the
    # post-processing fitted on its folds' OOF does
    weight = layout.tta_weight(cfg) if len(used) == n else 1.0
    inputs = {"config": config_hash(cfg, layout.submission_sections(cfg)),
              "sample": artifacts.file_hash(cfg.data_dir / cfg.data.sample_submission),
              "postprocess": json.dumps(post.to_json() if post is not None else None, sort_keys=True),
              **{layout.fold_name(k): artifacts.file_hash(p) for k, p in zip(used, paths, strict=True)}}
    if weight != 1.0:  # (only then: a record from before the weight stays current)
        inputs["tta_weight"] = str(weight)
        inputs |= {f"{layout.fold_name(k)}/plain": artifacts.file_hash(layout.fold_dir(cfg, k) / layout.TEST_PLAIN_CSV)
                   for k in used}
    what = f"mean of {n} folds" if len(used) == n else \
        f"mean of folds {', '.join(map(str, used))} of {n} only: a partial submission"
    if weight != 1.0:
        what += f", TTA mean weighted {weight:g} against the plain view (fitted on the OOF)"
    if post is not None:
        what += f", {post.kind} fitted on their out-of-fold predictions"
    return Planned(comp, used, layout.submission_path(cfg, used), layout.submit_stage(cfg, used), inputs, post,
                   weight, what)


def run_submit(cfg: Config, folds: list[int] | None = None) -> Path:
    """Average the folds' test probabilities and write the submission in sample_submission's shape.

    `folds`: some folds only (a quick leaderboard probe while the rest train); the file is then
    named for them. Every fold used must be trained and current for this config.
    """
    plan = plan_submission(cfg, folds)
    if plan.is_current(cfg):
        say(f"{plan.out} is up to date ({plan.what})")
        return plan.out
    comp, cols = plan.comp, plan.comp.prob_columns
    test_ids = comp.test[cfg.data.id_column].to_numpy()
    mean = pd.DataFrame(layout.test_predictions(cfg, plan.used, cols, test_ids, plan.weight), index=test_ids,
                        columns=cols)
    sub = build_submission(comp, cfg, mean, plan.post)
    artifacts.write_csv(plan.out, sub)
    records.mark_done(cfg.run_dir, plan.stage, plan.inputs, [plan.out])
    say(f"wrote {plan.out}: {len(sub)} rows, columns {list(sub.columns)}; {plan.what}")
    return plan.out
