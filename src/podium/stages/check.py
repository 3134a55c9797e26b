"""`make check`: the config and the competition validated, every image decoded (and cached, with
data.cache), the model built; nothing is trained. One line: ok, or the first problem."""

from __future__ import annotations

from podium.config import Config
from podium.console import say
from podium.evaluate.submission import submission_kind
from podium.stages.current import preflight, teacher_digest


def run_check(cfg: Config) -> None:
    comp, _ = preflight(cfg)
    teacher_digest(cfg, comp)  # a teacher that is missing, stale or of another competition
    what = {"multiclass": "classes", "binary": "classes", "multilabel": "labels"}.get(comp.task)
    outputs = f"{len(comp.prob_columns)} {what}" if what else "one value per image"
    say(f"ok: {len(comp.train)} train rows, {len(comp.test)} test rows, {comp.task}: {outputs}; "
        f"the submission holds {submission_kind(comp, cfg)}s in {cfg.data.sample_submission}'s shape")
