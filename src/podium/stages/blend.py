"""`make blend EXPS="a b c" NAME=x`: finished experiments (models, seeds, sizes, fold splits)
joined into runs/x/, a run of its own that make leaderboard lists, make report shows and make
bundle ships.

runs/x/ holds what an experiment's run folder holds at its top (oof.csv, cv.json with the same
keys, postprocess.json, config.yaml) plus blend.json (the members, the method, the weights) and
test.csv (the blended test predictions); the submission goes to submissions/x.csv. A blend is
current while each member is and still has the predictions it was blended from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config, config_from_dict
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.cv import format_cv, postprocess_kind, score_oof, write_oof, write_postprocess
from podium.evaluate.ensemble import GAIN_Z, blend, check_method, score_blend
from podium.evaluate.postprocess import Fitted
from podium.evaluate.submission import build_submission
from podium.runs import layout, records
from podium.runs.finished import is_blend, same_competition
from podium.stages.current import blend_inputs, finished_run


def blend_stage(cfg: Config, *, exps: list[str], name: str, method: str = "weights") -> dict:
    """make blend: `exps` blended into <runs_dir>/<name>/ and <submissions_dir>/<name>.csv (the
    folders from `cfg`)."""
    return run_blend(cfg.runs_dir, exps, name, method, cfg.submissions_dir)


def run_blend(runs_dir: str | Path, members: list[str], name: str, method: str = "weights",
              submissions_dir: str = "submissions") -> dict:
    """Blend the finished runs `members` into runs_dir/name; returns its cv.json."""
    runs_dir = Path(runs_dir)
    if len(members) < 2 or len(set(members)) != len(members):
        raise PodiumError(f"EXPS={' '.join(members)}: a blend needs two or more different runs")
    if name in members:
        raise PodiumError(f"NAME={name}: a blend cannot be one of its own members")
    run = runs_dir / name
    if (run / layout.fold_name(0)).exists() and not is_blend(runs_dir, name):
        raise PodiumError(f"NAME={name}: {run} is an experiment; give the blend a name of its own")
    done = [finished_run(runs_dir, m) for m in members]  # each refused unless current
    first = done[0]
    for other in done[1:]:
        same_competition(first.comp, other.comp, f"blend members {first.name} and {other.name}")
        if other.cfg.metric != first.cfg.metric:
            raise PodiumError(f"blend members {first.name} and {other.name} are scored by different metrics "
                              f"({first.cfg.metric}, {other.cfg.metric})")
    cfg = config_from_dict({**first.cfg.model_dump(mode="json"), "experiment": name, "runs_dir": str(runs_dir),
                            "submissions_dir": submissions_dir})
    comp, metric, task = first.comp, cfg.metric, first.comp.task
    try:
        check_method(method, metric, task)
    except ValueError as exc:
        raise PodiumError(f"METHOD={method}: {exc}") from None

    # Nested over the first member's folds: any split of the rows will do, as every member's
    # prediction of a row is already out of fold; what must not happen is weights fitted on the
    # rows they are scored on.
    id_col = cfg.data.id_column
    fold = _fold_column(runs_dir / first.name / layout.OOF_CSV, comp.train[id_col].to_numpy(), id_col)
    y = comp.encode(comp.train)
    kind = postprocess_kind(cfg, comp)
    report, oof = score_blend([d.oof for d in done], y, fold, metric, task, method)
    test = blend([d.test for d in done], report["weights"], method)

    cv, fitted = score_oof(cfg, comp, oof, fold, kind)
    post = Fitted.from_json(fitted) if fitted is not None else None
    kept = ("method", "fit", "weights", "fitted_weights", "mean_share", "shares", "score_in_sample",
            "member_scores", "note")
    cv["blend"] = {k: report[k] for k in kept} | {
        "members": members, "score_without_postprocess": report["score"],
        # each member's own CV score (its cv.json: nested, post-processed as it is), the figure the
        # blend's `score` compares with
        "member_cv": [artifacts.read_json(runs_dir / m / layout.CV_JSON)["score"] for m in members]}

    test_frame = layout.Predictions(comp.test[id_col].to_numpy(), test).frame(comp.prob_columns, id_col)
    spec = {"members": members, "method": method, "weights": report["weights"],
            "member_metrics": {d.name: d.cfg.metric for d in done}}
    artifacts.write_yaml(run / layout.CONFIG_YAML, cfg.model_dump(mode="json"))
    artifacts.write_json(run / layout.BLEND_JSON, spec)
    outputs = [write_oof(cfg, comp, oof, fold), *write_postprocess(cfg, fitted)]
    artifacts.write_csv(run / layout.TEST_CSV, test_frame)
    artifacts.write_json(run / layout.CV_JSON, cv)
    sub = build_submission(comp, cfg, test_frame.set_index(id_col), post)
    out = layout.submission_path(cfg)
    artifacts.write_csv(out, sub)
    written = [run / n for n in (layout.CONFIG_YAML, layout.BLEND_JSON, layout.TEST_CSV, layout.CV_JSON)]
    records.mark_done(run, layout.BLEND_STAGE, blend_inputs(method, done), written + outputs + [out])
    say(format_cv(cv))
    weights = ", ".join(f"{m} {w:.2f}" for m, w in zip(members, report["weights"], strict=True))
    singles = ", ".join(f"{m} {c:.5f}" for m, c in zip(members, cv["blend"]["member_cv"], strict=True))
    say(f"blend {name} ({method}): weights {weights}{_how(report)}; the members' CV "
        f"{metric}: {singles}; the blend's: {cv['score']:.5f}")
    say(f"wrote {run}/ and {out}: {len(sub)} rows")
    return cv


def _how(report: dict) -> str:
    """How the weights were chosen, for the summary line ("" for mean and rank)."""
    if report["note"]:
        return f" ({report['note']})"
    if report["shares"] is None:
        return ""
    fitted = ", ".join(f"{w:.2f}" for w in report["fitted_weights"])
    gains = ", ".join(f"{float(s):g}: {v['gain_z']:+.1f}" for s, v in report["shares"].items() if float(s) < 1)
    return (f"; fitted on the {report['fit']}: {fitted}, {report['mean_share']:g} of them the plain mean "
            f"(the nested gain over the mean, in standard errors: {gains}; {GAIN_Z:g} needed)")


def _fold_column(oof_csv: Path, train_ids: np.ndarray, id_col: str) -> np.ndarray:
    table = pd.read_csv(oof_csv, dtype={id_col: str}).set_index(id_col)
    return table.loc[train_ids, "fold"].to_numpy(dtype=np.int64)
