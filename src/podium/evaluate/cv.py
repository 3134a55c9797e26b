"""The out-of-fold predictions joined from the folds and scored: a run's oof.csv, cv.json and
postprocess.json (make oof writes them; a blend writes the same three).

Post-processing that the metric rewards (thresholds, cut-points, a temperature) is fitted on the
whole OOF for the submission, and scored nested: for each fold, fitted on the other folds' rows.
That nested score is the CV score; the score without post-processing and the in-sample one
(optimistic, labelled so) are kept beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config, config_hash
from podium.data.competition import Competition
from podium.errors import PodiumError
from podium.evaluate.metrics import higher_is_better, score, score_all
from podium.evaluate.postprocess import Fitted, kind_for, score_postprocess
from podium.evaluate.tta_weight import fit_tta_weight
from podium.predict.tta import views
from podium.runs import layout, records


def oof_predictions(cfg: Config, comp: Competition, folds: list[int], which: str = layout.OOF_CSV
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of train.csv, their OOF predictions (n, C), their fold) for the rows of `folds`, in
    train.csv's order; each fold's file (`which`: OOF_CSV, or a variant beside it: `variant_files`)
    must hold exactly its rows of folds.csv."""
    id_col, cols = cfg.data.id_column, comp.prob_columns
    folds_path = layout.folds_csv(cfg)
    table = pd.read_csv(folds_path, dtype={id_col: str})
    fold_of = pd.Series(table["fold"].to_numpy(), index=table[id_col].to_numpy())
    train_ids = comp.train[id_col].to_numpy()
    if len(table) != len(train_ids) or set(fold_of.index) != set(train_ids):
        raise PodiumError(f"{folds_path} does not cover {cfg.data.train_csv} exactly once; rerun make folds")
    fold_col = fold_of.loc[train_ids].to_numpy()
    rows = np.flatnonzero(np.isin(fold_col, folds))
    parts = [layout.read_fold(cfg, k, which, cols, expected_ids=fold_of.index[fold_of.to_numpy() == k])
             for k in folds]
    joined = layout.Predictions(np.concatenate([p.ids for p in parts]), np.concatenate([p.probs for p in parts]))
    return rows, joined.in_order(train_ids[rows]), fold_col[rows]


def fold_score(cfg: Config, comp: Competition, fold: int) -> float:
    """One trained fold's score by the metric, from its OOF file (its final weights, with TTA when
    on), against train.csv's labels."""
    oof = layout.read_fold(cfg, fold, layout.OOF_CSV, comp.prob_columns)
    truth = pd.Series(list(comp.encode(comp.train)), index=comp.train[cfg.data.id_column].to_numpy())
    return float(score(cfg.metric, np.stack(truth.loc[oof.ids].to_numpy()), oof.probs, comp.task))


def postprocess_kind(cfg: Config, comp: Competition) -> str:
    """What make oof fits for this metric and task: 'temperature', 'thresholds', 'cutpoints' or 'none'."""
    return kind_for(comp.task, cfg.metric) if cfg.postprocess.enabled else "none"


def update_oof(cfg: Config, comp: Competition) -> tuple[dict, bool]:
    """The run's oof.csv, cv.json and postprocess.json brought up to date with its folds (the
    caller has checked every fold is current); returns (cv.json's content, whether it was up to
    date already)."""
    n = cfg.folds.n_splits
    paths = {layout.fold_name(k): layout.fold_dir(cfg, k) / layout.OOF_CSV for k in range(n)}
    # Folds trained before podium wrote a variant lack its file: no figure for it rather than a wrong one.
    variants = {name: key for name, key in variant_files(cfg).items()
                if all((layout.fold_dir(cfg, k) / name).is_file() for k in range(n))}
    for name in variants:
        paths |= {f"{layout.fold_name(k)}/{name}": layout.fold_dir(cfg, k) / name for k in range(n)}
    out_json = layout.cv_json(cfg)
    kind = postprocess_kind(cfg, comp)
    inputs = {"config": config_hash(cfg, layout.training_sections(cfg)), "postprocess": kind,
              "folds": artifacts.file_hash(layout.folds_csv(cfg)),
              **{name: artifacts.file_hash(p) for name, p in paths.items()}}
    if "tta" in variants.values():  # (only then: a record from before the key stays current)
        inputs["tta_weight"] = str(cfg.postprocess.tta_weight)
    if records.is_up_to_date(cfg.run_dir, layout.OOF_STAGE, inputs):
        return artifacts.read_json(out_json), True

    _, probs, fold_col = oof_predictions(cfg, comp, list(range(n)))
    weighting = None
    if "tta" in variants.values() and cfg.postprocess.tta_weight:
        _, plain, _ = oof_predictions(cfg, comp, list(range(n)), layout.OOF_PLAIN_CSV)
        weighting = fit_tta_weight(comp.encode(comp.train), probs, plain, fold_col, comp.task)
    tta_mean, fit_on, per_fold = probs, None, None
    if weighting is not None:  # each fold's rows mixed by the weight chosen on the other folds
        probs, fit_on, per_fold = weighting["nested"], weighting["mixture"], weighting["mixtures"]
    cv, fitted = score_oof(cfg, comp, probs, fold_col, kind, fit_on=fit_on, per_fold=per_fold)
    for name, key in variants.items():  # the same folds' variant, scored the same way (nested too)
        _, other, _ = oof_predictions(cfg, comp, list(range(n)), name)
        without, _ = score_oof(cfg, comp, other, fold_col, kind)
        cv[key] = {"score_without": without["score"], "fold_scores_without": without["fold_scores"],
                   "gain": cv["score"] - without["score"]}
    if "tta" in cv:
        cv["tta"]["views"] = len(views(cfg.predict))
    if weighting is not None:
        full, _ = score_oof(cfg, comp, tta_mean, fold_col, kind)
        cv["tta"].update(weight=weighting["weight"], fold_weights=list(weighting["fold_weights"].values()),
                         score_tta_mean=full["score"], losses_in_sample=weighting["losses"])
        if "averaging" in cv:  # the best epoch's OOF is a TTA mean: compared with the average's TTA mean
            cv["averaging"]["gain"] = full["score"] - cv["averaging"]["score_without"]
    if "averaging" in cv:
        cv["averaging"]["epochs"] = [layout.trained_info(cfg, k).get("final_weights_epochs") for k in range(n)]
    weight_path = cfg.run_dir / layout.TTA_WEIGHT_JSON
    if weighting is not None:
        outputs = [artifacts.write_json(weight_path, {"weight": weighting["weight"]})]
    else:  # a submission must not apply a weight an earlier config fitted
        weight_path.unlink(missing_ok=True)
        outputs = []
    outputs += [write_oof(cfg, comp, probs, fold_col), out_json, *write_postprocess(cfg, fitted)]
    artifacts.write_json(out_json, cv)
    records.mark_done(cfg.run_dir, layout.OOF_STAGE, inputs, outputs)
    return cv, False


def variant_files(cfg: Config) -> dict[str, str]:
    """The folds' OOF files that a config writes beside oof.csv, each with the cv.json key it is
    scored under: the plain view without TTA (`tta`), the best epoch without averaging (`averaging`)."""
    out = {}
    if len(views(cfg.predict)) > 1:
        out[layout.OOF_PLAIN_CSV] = "tta"
    if cfg.train.average_top_k > 1:
        out[layout.OOF_BEST_EPOCH_CSV] = "averaging"
    return out


def score_oof(cfg: Config, comp: Competition, probs: np.ndarray, fold: np.ndarray, kind: str, *,
              fit_on: np.ndarray | None = None, per_fold: dict | None = None) -> tuple[dict, dict | None]:
    """cv.json's content for OOF predictions of every train.csv row (in its order; `fold`: each
    row's fold), and the post-processing `kind` fitted on all of them (JSON, or None). With a TTA
    weight: the post-processing is fitted on `fit_on` (every row mixed by the submission's weight),
    and for each fold on `per_fold[k]` (every row mixed by the weight chosen without fold k).

    Without post-processing the score is the metric on the whole OOF and on each fold. With it,
    both are nested (each fold's rows transformed by a fit on the other folds'), and the score
    without it and the in-sample one are kept under `postprocess`.
    """
    metric, task = cfg.metric, comp.task
    y, folds = comp.encode(comp.train), np.unique(fold)
    cv = {"experiment": cfg.experiment, "metric": metric, "score": score(metric, y, probs, task),
          "fold_scores": [score(metric, y[fold == k], probs[fold == k], task) for k in folds]}
    fitted = None
    if kind != "none":
        post = score_postprocess(y, probs if fit_on is None else fit_on, fold, metric, task, comp.classes,
                                 per_fold=per_fold)
        cv.update(score=post["score"], fold_scores=post["fold_scores"])
        cv["postprocess"] = {k: v for k, v in post.items() if k not in ("score", "fold_scores", "fitted")}
        fitted = post["fitted"]
    cv.update(mean=float(np.mean(cv["fold_scores"])), std=float(np.std(cv["fold_scores"])), folds=len(folds),
              rows=int(len(y)), other_metrics=score_all(y, probs, task))
    return cv, fitted


def write_oof(cfg: Config, comp: Competition, probs: np.ndarray, fold: np.ndarray) -> Path:
    """The run's oof.csv: id, fold, the prediction columns, in train.csv's row order."""
    oof = layout.Predictions(comp.train[cfg.data.id_column].to_numpy(), probs).frame(comp.prob_columns,
                                                                                    cfg.data.id_column)
    oof.insert(1, "fold", fold)
    return artifacts.write_csv(cfg.run_dir / layout.OOF_CSV, oof)


def write_postprocess(cfg: Config, fitted: dict | None) -> list[Path]:
    """The run's postprocess.json, or none: a submission must not apply what an earlier config fitted."""
    path = cfg.run_dir / layout.POSTPROCESS_JSON
    if fitted is None:
        path.unlink(missing_ok=True)
        return []
    return [artifacts.write_json(path, fitted)]


def read_postprocess(cfg: Config) -> Fitted | None:
    """The run's fitted post-processing, or None when there is none."""
    path = cfg.run_dir / layout.POSTPROCESS_JSON
    if not path.is_file():
        return None
    return Fitted.from_json(artifacts.read_json(path))


def format_cv(cv: dict) -> str:
    """The CV table a stage prints: each fold's score, their mean and spread, the OOF score; with
    post-processing the nested score beside the plain one, and the in-sample figure labelled."""
    m, post = cv["metric"], cv.get("postprocess")
    if post is None:
        lines = [f"{'fold':>6}  {m:>10}"]
        lines += [f"{k:>6}  {s:>10.5f}" for k, s in enumerate(cv["fold_scores"])]
    else:  # the nested score with post-processing, and the plain one beside it
        lines = [f"{'fold':>6}  {m + ' +' + post['kind']:>22}  {'without':>10}"]
        lines += [f"{k:>6}  {s:>22.5f}  {w:>10.5f}"
                  for k, (s, w) in enumerate(zip(cv["fold_scores"], post["fold_scores_without"], strict=True))]
    width = 10 if post is None else 22
    lines += [f"{'mean':>6}  {cv['mean']:>{width}.5f} ± {cv['std']:.5f}", f"{'OOF':>6}  {cv['score']:>{width}.5f}"]
    if post is not None:
        lines.append(f"{post['kind']} fitted on the other folds for each fold (nested); without it {m} "
                     f"{post['score_without']:.5f}; fitted and scored on the same rows (in-sample, optimistic) "
                     f"{post['score_in_sample']:.5f}")
    tta, avg = cv.get("tta"), cv.get("averaging")
    if tta is not None and "weight" in tta:
        lines.append(f"with TTA over {tta['views']} views, weighted {tta['weight']:g} against the plain view (the "
                     f"weight fitted on the OOF's log loss; for each fold on the other folds: "
                     f"{', '.join(f'{w:g}' for w in tta['fold_weights'])}); the TTA mean alone {m} "
                     f"{tta['score_tta_mean']:.5f}, the plain view alone {tta['score_without']:.5f} (scored the "
                     "same way)")
    elif tta is not None:
        lines.append(f"with TTA over {tta['views']} views; without it (the plain view of the same models, scored "
                     f"the same way) {m} {tta['score_without']:.5f}")
        if tta["gain"] < 0 if higher_is_better(m) else tta["gain"] > 0:
            lines.append("TTA made the CV worse: predict.tta: [] (and tta_hflip: false) predicts without it, or "
                         "postprocess.tta_weight: true weighs it against the plain view")
    if avg is not None:
        lines.append(f"with the final weights averaged over the best epochs; the best epoch alone (same TTA, "
                     f"scored the same way) {m} {avg['score_without']:.5f}")
    others = "  ".join(f"{k} {v:.5f}" for k, v in cv["other_metrics"].items() if k != m)
    return "\n".join(lines) + f"\nother OOF metrics (no post-processing): {others}"
