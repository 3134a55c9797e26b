"""`make report`: runs/<exp>/report.html, a page that opens from disk with no server.

Its images live in runs/<exp>/report/ and are linked by relative paths, so the folder can be
copied or zipped as a whole.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import confusion_matrix

from podium import artifacts
from podium.config import Config
from podium.console import say
from podium.data.images import thumbnail_jpeg
from podium.evaluate import plots
from podium.evaluate.ensemble import GAIN_Z
from podium.runs import layout
from podium.runs.finished import is_blend, saved_config
from podium.stages.current import check_blend, load_checked
from podium.stages.oof import run_oof

WRONG_SHOWN = 12


def confidently_wrong(comp, cfg: Config, oof: pd.DataFrame, cols: list[str], n: int = WRONG_SHOWN) -> pd.DataFrame:
    """The OOF rows predicted wrong with the highest confidence: id, path, true, predicted, confidence."""

    y = comp.encode(comp.train)
    p = oof[cols].to_numpy(dtype=np.float64)
    if comp.task == "regression":  # the largest errors, the "confidence" column holding |error|
        error = np.abs(p[:, 0] - y)
        table = pd.DataFrame({"id": comp.train[cfg.data.id_column].to_numpy(),
                              "path": comp.train["path"].astype(str), "true": [f"{v:g}" for v in y],
                              "predicted": [f"{v:.3g}" for v in p[:, 0]], "confidence": error})
        return table.sort_values("confidence", ascending=False).head(n)
    if comp.task == "multiclass":
        pred = p.argmax(axis=1)
        conf = p.max(axis=1)
        wrong = pred != y
        true_txt = [str(comp.classes[i]) for i in y]
        pred_txt = [str(comp.classes[i]) for i in pred]
    else:
        y2 = y.reshape(len(y), -1)
        hard = (p >= 0.5).astype(int)
        wrong = (hard != y2).any(axis=1)
        conf = np.where(hard != y2, np.maximum(p, 1 - p), 0).max(axis=1)
        names = np.asarray(cols, dtype=object)
        fmt = (lambda v: str(int(v[0]))) if comp.task == "binary" else (lambda v: " ".join(names[v > 0]) or "(none)")
        true_txt = [fmt(v) for v in y2]
        pred_txt = [fmt(v) for v in hard]
    table = pd.DataFrame({"id": comp.train[cfg.data.id_column].to_numpy(), "path": comp.train["path"].astype(str),
                          "true": true_txt, "predicted": pred_txt, "confidence": conf})
    return table[wrong].sort_values("confidence", ascending=False).head(n)


def _reliability_inputs(comp, y, p):
    if comp.task == "multiclass":
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    flat_p, flat_y = p.reshape(-1), y.reshape(-1)
    return np.maximum(flat_p, 1 - flat_p), ((flat_p >= 0.5) == flat_y).astype(float)


def run_report(cfg: Config, *, name: str = "") -> Path:
    """runs/<exp>/report.html; `name`: another run under runs_dir (a blend, an experiment), shown
    with the config it was made with."""
    cfg = saved_config(cfg.runs_dir, name) if name else cfg
    run = cfg.run_dir
    # The OOF stage refuses folds that are not current for this config and is skipped when its
    # files are up to date: the page always shows the folds this config trained.
    if is_blend(cfg.runs_dir, cfg.experiment):  # refused unless every member is current
        check_blend(cfg.runs_dir, cfg.experiment)
        cv = artifacts.read_json(layout.cv_json(cfg))
    else:
        cv = run_oof(cfg)
    comp, _ = load_checked(cfg)
    cols = comp.prob_columns
    oof = pd.read_csv(run / layout.OOF_CSV, dtype={cfg.data.id_column: str})
    oof = oof.set_index(cfg.data.id_column).loc[comp.train[cfg.data.id_column].to_numpy()].reset_index()
    y = comp.encode(comp.train)
    p = oof[cols].to_numpy(dtype=np.float64)

    out = run / layout.REPORT_FIGURES
    shutil.rmtree(out, ignore_errors=True)
    figures = [("Fold scores", plots.plot_fold_scores(cv, out / "fold_scores.png"))]
    if comp.task == "multiclass":
        matrix = confusion_matrix(y, p.argmax(axis=1), labels=range(len(comp.classes)))
        figures.append(("OOF confusion matrix, normalized per true class",
                        plots.plot_confusion(matrix, comp.classes, out / "confusion.png")))
    if comp.task == "binary":
        figures.append(("OOF ROC and precision-recall", plots.plot_roc_pr(y, p[:, 0], out / "roc_pr.png")))
    if comp.task != "regression":  # probabilities against how often they are right
        conf, correct = _reliability_inputs(comp, y, p[:, 0] if comp.task == "binary" else p)
        figures.append(("OOF reliability", plots.plot_reliability(conf, correct, out / "reliability.png")))
    for k in range(cfg.folds.n_splits):
        hist = layout.fold_dir(cfg, k) / layout.HISTORY_CSV
        if hist.is_file():
            png = out / f"{layout.fold_name(k)}_history.png"
            figures.append((f"Fold {k} training curves", plots.plot_history(pd.read_csv(hist), cfg.metric, png)))
    copied = {layout.ABLATION_PNG: "Ablation", layout.SCHEDULE_PNG: "Schedule",
              layout.TUNE_HISTORY_PNG: "make tune: each trial's score", layout.TUNE_IMPORTANCE_PNG:
              "make tune: what each searched key is worth (fANOVA on the complete trials)"}
    for name, title in copied.items():
        if (run / name).is_file():
            artifacts.write_bytes(out / name, (run / name).read_bytes())
            figures.append((title, out / name))

    wrong = confidently_wrong(comp, cfg, oof, cols)
    thumbs = []
    for i, row in enumerate(wrong.itertuples()):
        thumb = artifacts.write_bytes(out / f"wrong_{i:02d}.jpg", thumbnail_jpeg(row.path))
        thumbs.append((thumb, row))

    saved = layout.fold_dir(cfg, 0) / layout.CONFIG_YAML
    provenance = yaml.safe_load(saved.read_text()).get("provenance", {}) if saved.is_file() else {}
    page = _html(cfg, cv, figures, thumbs, provenance, run)
    path = artifacts.write_text(run / layout.REPORT_HTML, page)
    say(f"wrote {path} ({len(figures)} figures, {len(thumbs)} confidently wrong images)")
    return path


def _variants_html(cv: dict) -> str:
    """The CV without TTA and without checkpoint averaging, from the same models (when they were on)."""
    rows = []
    tta = cv.get("tta")
    if tta and "weight" in tta:
        rows.append((f"TTA over {tta['views']} views weighted {tta['weight']:g} against the plain view, the weight "
                     "chosen on the other folds for each fold (the CV score)", cv["score"]))
        rows.append((f"the TTA mean over {tta['views']} views", tta["score_tta_mean"]))
        rows.append(("the plain view of the same models", tta["score_without"]))
    elif tta:
        rows.append((f"with TTA over {tta['views']} views (the CV score)", cv["score"]))
        rows.append(("the plain view of the same models", tta["score_without"]))
    if cv.get("averaging"):
        epochs = "; ".join(f"fold {k}: {', '.join(str(e + 1) for e in ep or [])}"
                           for k, ep in enumerate(cv["averaging"]["epochs"]))
        rows.append((f"final weights averaged over epochs ({epochs})",
                     tta["score_tta_mean"] if tta and "weight" in tta else cv["score"]))
        rows.append(("the best epoch alone", cv["averaging"]["score_without"]))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(name)}</td><td>{v:.5f}</td></tr>" for name, v in rows)
    return (f"<h2>With and without</h2><table><tr><th>predictions</th><th>{html.escape(cv['metric'])}</th></tr>"
            f"{body}</table>")


def _shrinkage_html(blended: dict, metric: str) -> str:
    """How fitted weights were shrunk toward the plain mean (nothing for mean and rank blends)."""
    esc = html.escape
    if blended.get("note"):
        return f"<p>{esc(blended['note'])}.</p>"
    if not blended.get("shares"):
        return ""
    rows = "".join(f"<tr><td>{float(s):g}</td><td>{v['metric']:.5f}</td><td>{v['proper']:.5f}</td>"
                   f"<td>{v['gain_z']:+.1f}</td></tr>" for s, v in blended["shares"].items())
    fitted = ", ".join(f"{w:.3f}" for w in blended["fitted_weights"])
    return (f"<p>Weights fitted on the {esc(blended['fit'])} ({fitted}), then {blended['mean_share']:g} of them "
            f"replaced by the plain mean. For each share of the mean, its blend nested over the folds (the choice "
            f"is made on these rows, so the best of them is not the CV figure; the CV score chooses each fold's "
            f"share on the other folds). A share below 1 needs a gain in the proper score of more than "
            f"{GAIN_Z:g} standard errors over the mean:</p>"
            f"<table><tr><th>share of the mean</th><th>{esc(metric)}</th><th>proper score</th>"
            f"<th>gain over the mean (standard errors)</th></tr>{rows}</table>")


def _html(cfg: Config, cv: dict, figures, thumbs, provenance: dict, run: Path) -> str:
    esc = html.escape
    rel = lambda p: Path(p).relative_to(run).as_posix()  # noqa: E731
    fold_rows = "".join(f"<tr><td>{k}</td><td>{s:.5f}</td></tr>" for k, s in enumerate(cv["fold_scores"]))
    others = "".join(f"<tr><td>{esc(k)}</td><td>{v:.5f}</td></tr>" for k, v in cv["other_metrics"].items())
    blended = cv.get("blend")
    blend_html = "" if blended is None else (
        f"<h2>Blend ({esc(blended['method'])})</h2><table><tr><th>member</th><th>weight</th>"
        f"<th>its CV {esc(cv['metric'])}</th><th>its OOF, no post-processing</th></tr>"
        + "".join(f"<tr><td>{esc(m)}</td><td>{w:.3f}</td><td>{c:.5f}</td><td>{s:.5f}</td></tr>" for m, w, c, s in
                  zip(blended["members"], blended["weights"], blended["member_cv"], blended["member_scores"],
                      strict=True))
        + f"</table><p>Blended, before post-processing: {blended['score_without_postprocess']:.5f} nested "
        f"(weights fitted on the other folds for each fold), {blended['score_in_sample']:.5f} in-sample.</p>"
        + _shrinkage_html(blended, cv["metric"]))
    post = cv.get("postprocess")
    post_html = "<p>None fitted: the metric scores the predictions as they are.</p>" if post is None else (
        f"<p>{esc(post['kind'])} fitted on the out-of-fold predictions, applied to the submission: "
        f"<code>{esc(', '.join(f'{v:.4g}' for v in post['params']))}</code></p>"
        f"<table><tr><th>{esc(cv['metric'])}</th><th>OOF</th></tr>"
        f"<tr><td>nested (fitted on the other folds, scored on each): the CV score</td><td>{cv['score']:.5f}</td></tr>"
        f"<tr><td>without post-processing</td><td>{post['score_without']:.5f}</td></tr>"
        f"<tr><td>in-sample (fitted and scored on the same rows; optimistic)</td>"
        f"<td>{post['score_in_sample']:.5f}</td></tr></table>")
    variants_html = _variants_html(cv)
    figs = "".join(f"<figure><img src='{rel(p)}' alt='{esc(t)}'><figcaption>{esc(t)}</figcaption></figure>"
                   for t, p in figures)
    cards = "".join(
        f"<figure class='thumb'><img src='{rel(p)}' alt='{esc(str(r.id))}'><figcaption>{esc(str(r.id))}<br>"
        f"true <b>{esc(r.true)}</b>, predicted <b>{esc(r.predicted)}</b> ({r.confidence:.3f})</figcaption></figure>"
        for p, r in thumbs) or "<p>No wrong out-of-fold predictions.</p>"
    config_text = esc(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    prov_text = esc(json.dumps(provenance, indent=2))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>podium report: {esc(cfg.experiment)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.8em; text-align: right; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figure img {{ max-width: 100%; }}
figure.thumb {{ width: 150px; font-size: 0.8em; }}
figure.thumb img {{ width: 128px; height: auto; image-rendering: pixelated; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }}
</style></head><body>
<h1>{esc(cfg.experiment)}</h1>
<p>CV {esc(cv['metric'])}: <b>{cv['score']:.5f}</b> on the whole out-of-fold set
({cv['rows']} rows); fold mean {cv['mean']:.5f} ± {cv['std']:.5f} over {cv['folds']} folds.</p>
<h2>Cross-validation</h2>
<table><tr><th>fold</th><th>{esc(cv['metric'])}</th></tr>{fold_rows}</table>
<table><tr><th>other OOF metric (no post-processing)</th><th>value</th></tr>{others}</table>
{blend_html}
{variants_html}
<h2>Post-processing</h2>{post_html}
<h2>Figures</h2>{figs}
<h2>Most confidently wrong out-of-fold images</h2>{cards}
<h2>Config</h2><pre>{config_text}</pre>
<h2>Provenance (fold 0)</h2><pre>{prov_text}</pre>
</body></html>
"""
