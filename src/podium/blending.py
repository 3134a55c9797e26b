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

from . import artifacts, runs
from .blend import blend, check_method, evaluate
from .config import config_from_dict
from .errors import PodiumError
from .finished import is_blend, same_competition
from .postprocess import Fitted, fit as fit_post


def _out(msg: str) -> None:
    print(msg, flush=True)


def check_blend(runs_dir: str | Path, name: str) -> None:
    """Refuse (one line) unless blend `name` is current: every member current (checked the way
    an experiment's consumers check it) and unchanged since it was blended."""
    from .stages import finished_run

    run = Path(runs_dir) / name
    spec = artifacts.read_json(run / runs.BLEND_JSON)
    inputs = _inputs(spec["method"], [finished_run(runs_dir, m) for m in spec["members"]])
    if artifacts.is_up_to_date(run, "blend", inputs):
        return
    try:
        saved = artifacts.read_json(artifacts.record_path(run, "blend")).get("inputs", {})
    except (OSError, ValueError):
        saved = {}
    changed = [k.removeprefix("member:") for k in inputs if k.startswith("member:") and saved.get(k) != inputs[k]]
    what = f"member(s) {', '.join(changed)} changed since" if changed else "its files changed since"
    raise PodiumError(f"blend {name} is stale: {what} it was made; make it again "
                      f"(make blend EXPS=\"{' '.join(spec['members'])}\" NAME={name})")


def _inputs(method: str, done) -> dict[str, str]:
    return {"method": method, **{f"member:{d.name}": d.digest for d in done}}


def run_blend(runs_dir: str | Path, members: list[str], name: str, method: str = "weights",
              submissions_dir: str = "submissions") -> dict:
    """Blend the finished runs `members` into runs_dir/name; returns its cv.json."""
    from .stages import finished_run, postprocess_kind, print_cv, score_oof, write_oof, write_postprocess
    from .submission import build_submission

    runs_dir = Path(runs_dir)
    if len(members) < 2 or len(set(members)) != len(members):
        raise PodiumError(f"EXPS={' '.join(members)}: a blend needs two or more different runs")
    if name in members:
        raise PodiumError(f"NAME={name}: a blend cannot be one of its own members")
    run = runs_dir / name
    if (run / "fold0").exists() and not is_blend(runs_dir, name):
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
    fold = _fold_column(runs_dir / first.name / runs.OOF_CSV, comp.train[id_col].to_numpy(), id_col)
    y = comp.encode(comp.train)
    kind = postprocess_kind(cfg, comp)
    # A blend under log loss is judged after its temperature: its weights are chosen for the
    # calibrated blend (a temperature fitted on the same rows for each candidate), or the raw log
    # loss, mostly a matter of calibration, would pick them. Thresholds and cut-points are left out
    # of the weight search: refitting them for every candidate would cost too much.
    judge = None
    if kind == "temperature":
        def judge(rows_y, blended):
            return fit_post("temperature", rows_y, blended, metric, task).apply(blended)
    report, oof = evaluate([d.oof for d in done], y, fold, metric, task, method, judge=judge)
    test = blend([d.test for d in done], report["weights"], method)

    cv, fitted = score_oof(cfg, comp, oof, fold, kind)
    post = Fitted.from_json(fitted) if fitted is not None else None
    cv["blend"] = {k: report[k] for k in ("method", "search", "weights", "score_in_sample", "member_scores")} | {
        "members": members, "score_without_postprocess": report["score"],
        # each member's own CV score (its cv.json: nested, post-processed as it is), the figure the
        # blend's `score` compares with
        "member_cv": [artifacts.read_json(runs_dir / m / "cv.json")["score"] for m in members],
        "weights_judged_after": "temperature" if judge is not None else None}

    test_frame = runs.Predictions(comp.test[id_col].to_numpy(), test).frame(comp.prob_columns, id_col)
    spec = {"members": members, "method": method, "weights": report["weights"],
            "member_metrics": {d.name: d.cfg.metric for d in done}}
    artifacts.write_yaml(run / runs.CONFIG_YAML, cfg.model_dump(mode="json"))
    artifacts.write_json(run / runs.BLEND_JSON, spec)
    outputs = [write_oof(cfg, comp, oof, fold), *write_postprocess(cfg, fitted)]
    artifacts.write_csv(run / runs.TEST_CSV, test_frame)
    artifacts.write_json(run / "cv.json", cv)
    sub = build_submission(comp, cfg, test_frame.set_index(id_col), post)
    out = Path(submissions_dir) / f"{name}.csv"
    artifacts.write_csv(out, sub)
    written = [run / n for n in (runs.CONFIG_YAML, runs.BLEND_JSON, runs.TEST_CSV, "cv.json")]
    artifacts.mark_done(run, "blend", _inputs(method, done), written + outputs + [out])
    print_cv(cv)
    weights = ", ".join(f"{m} {w:.2f}" for m, w in zip(members, report["weights"], strict=True))
    singles = ", ".join(f"{m} {c:.5f}" for m, c in zip(members, cv["blend"]["member_cv"], strict=True))
    chosen = " (chosen for the blend after its temperature)" if judge is not None else ""
    _out(f"blend {name} ({method}): weights {weights}{chosen}; the members' CV {metric}: {singles}; "
         f"the blend's: {cv['score']:.5f}")
    _out(f"wrote {run}/ and {out}: {len(sub)} rows")
    return cv


def _fold_column(oof_csv: Path, train_ids: np.ndarray, id_col: str) -> np.ndarray:
    import pandas as pd

    table = pd.read_csv(oof_csv, dtype={id_col: str}).set_index(id_col)
    return table.loc[train_ids, "fold"].to_numpy(dtype=np.int64)


def blend_members(runs_dir: str | Path, name: str) -> list[str]:
    return list(artifacts.read_json(Path(runs_dir) / name / runs.BLEND_JSON)["members"])

