"""`make audit`: runs/<exp>/audit.html and audit.csv, an audit of the data before the CV is trusted.

- Duplicates: the same file (content hash) or the same picture saved again (perceptual hash,
  data/duplicates.py), within train, across folds and between train and test, as groups. A group
  is flagged when its train rows carry different labels (at least one is wrong, or the task is
  ambiguous), when its train rows sit in different folds (a copy in the training folds scores its
  twin in the held-out fold: the CV rises and the leaderboard does not follow), and when it joins
  train and test rows.
- Label suspects, once every fold is trained: the rows whose out-of-fold probability of their own
  label is lowest (a regression: the largest errors), the candidates for a wrong label.

It writes runs/<exp>/audit_groups.csv too: every train row's `audit_group` (its duplicate group, or
its own id), which `folds.groups_csv` turns into folds that keep each group in one fold. It changes
no data: what to drop or relabel is the user's call (data.drop_ids, data.relabel).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podium import artifacts
from podium.config import Config
from podium.console import say
from podium.data.competition import Competition
from podium.data.duplicates import connected_groups, hamming, near_pairs, perceptual_hashes
from podium.errors import PodiumError
from podium.evaluate.audit_page import audit_page
from podium.runs import layout
from podium.stages.current import checked_images, current_oof, load_checked

GROUP_COLUMN = "audit_group"
FLAGS = ("conflicting_labels", "straddles_folds", "train_and_test")
SMALL_SIDE = 32  # below this the 32 x 32 image the perceptual hash reads is an enlargement


def _label_text(comp: Competition, df: pd.DataFrame) -> list[str]:
    """Each row's target as one string (several target columns joined), for comparing and showing."""
    cols = list(comp.target_columns)
    if comp.target_kind == "one_hot":
        return [cols[i] for i in df[cols].to_numpy().argmax(axis=1)]
    return df[cols].astype(str).agg(" ".join, axis=1).tolist() if len(cols) > 1 else df[cols[0]].astype(str).tolist()


def _images(cfg: Config, comp: Competition) -> pd.DataFrame:
    """Every image the competition uses: id, split (train / test / extra), fold (train rows, once
    folds.csv exists), label, path."""
    id_col = cfg.data.id_column
    fold = pd.Series(dtype="Int64")
    if layout.folds_csv(cfg).is_file():
        folds = pd.read_csv(layout.folds_csv(cfg), dtype={id_col: str})
        fold = folds.set_index(id_col)["fold"]
    parts = [pd.DataFrame({"id": comp.train[id_col], "split": "train", "fold": comp.train[id_col].map(fold),
                           "label": _label_text(comp, comp.train), "path": comp.train["path"].astype(str)})]
    parts.append(pd.DataFrame({"id": comp.test[id_col], "split": "test", "fold": pd.NA, "label": "",
                               "path": comp.test["path"].astype(str)}))
    if comp.extra is not None:
        parts.append(pd.DataFrame({"id": comp.extra[id_col], "split": "extra", "fold": pd.NA,
                                   "label": _label_text(comp, comp.extra), "path": comp.extra["path"].astype(str)}))
    out = pd.concat(parts, ignore_index=True)
    out["fold"] = out["fold"].astype("Int64")
    return out


def duplicate_groups(images: pd.DataFrame, digests: list[str], max_distance: int) -> tuple[pd.DataFrame, int]:
    """(One row per image in a group of duplicates: group, kind (exact: one content hash; near:
    pictures alike), the image's columns, its perceptual distance to the group's first image, and
    the group's flags; the median image's shorter side). `digests`: each image's content hash;
    images with the same one are one group whatever their perceptual hashes' distance."""
    phashes, sides = perceptual_hashes(images["path"].tolist())
    by_digest: dict[str, int] = {}
    pairs = []
    for i, d in enumerate(digests):
        if d in by_digest:
            pairs.append((by_digest[d], i))
        else:
            by_digest[d] = i
    pairs += near_pairs(phashes, max_distance)
    rows = []
    for g, members in enumerate(connected_groups(len(images), pairs)):
        part = images.iloc[members]
        train = part[part["split"] != "test"]
        flags = {"conflicting_labels": train["label"].nunique() > 1,
                 "straddles_folds": part["fold"].dropna().nunique() > 1,
                 "train_and_test": (part["split"] == "test").any() and (part["split"] != "test").any()}
        kind = "exact" if len({digests[i] for i in members}) == 1 else "near"
        distance = hamming(phashes[members], phashes[members[0]])
        rows.append(part.assign(kind=kind, group=f"g{g}", distance=distance,
                                flags=" ".join(f for f in FLAGS if flags[f])))
    columns = ["kind", "group", "id", "split", "fold", "label", "distance", "flags", "path"]
    side = int(np.median(sides)) if len(sides) else 0
    return (pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)), side


def label_suspects(cfg: Config, comp: Competition, n: int) -> tuple[pd.DataFrame | None, str]:
    """(The `n` train rows the OOF contradicts most, or None; a line on where they come from). Only
    from an OOF of every fold, current for this config and data (a stale one would accuse rows with
    another model's mistakes)."""
    try:
        current_oof(cfg)
    except PodiumError as exc:
        return None, f"no label suspects: {exc}"
    id_col, cols = cfg.data.id_column, comp.prob_columns
    ids = comp.train[id_col].to_numpy()
    p = layout.read_predictions(cfg.run_dir / layout.OOF_CSV, cols, id_col, ids).in_order(ids).astype(np.float64)
    y = comp.encode(comp.train)
    predicted: list[str]
    if comp.task == "regression":
        score = -np.abs(p[:, 0] - y)  # the largest error first
        predicted = [f"{v:.4g}" for v in p[:, 0]]
    elif comp.task == "multiclass":
        score = p[np.arange(len(y)), y]
        predicted = [f"{comp.classes[i]} ({p[r, i]:.3f})" for r, i in enumerate(p.argmax(axis=1))]
    else:  # binary, multilabel: the probability of each label's truth, the most contradicted label counts
        truth = np.where(np.asarray(y).reshape(p.shape) >= 0.5, p, 1 - p)
        score = truth.min(axis=1)
        worst = truth.argmin(axis=1)
        predicted = [f"{cols[j]}: {p[r, j]:.3f}" for r, j in enumerate(worst)]
    order = np.argsort(score, kind="stable")[:n]
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={id_col: str}).set_index(id_col)["fold"]
    labels = np.asarray(_label_text(comp, comp.train), dtype=object)
    table = pd.DataFrame({"kind": "suspect", "group": "", "id": ids[order], "split": "train",
                          "fold": folds.loc[ids[order]].to_numpy(), "label": labels[order],
                          "p_label": score[order] if comp.task != "regression" else np.nan,
                          "error": -score[order] if comp.task == "regression" else np.nan,
                          "predicted": np.asarray(predicted, dtype=object)[order],
                          "path": comp.train["path"].astype(str).to_numpy()[order]})
    return table, f"label suspects from {layout.OOF_CSV} of all {cfg.folds.n_splits} folds"


def audit_groups(images: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Every train row's audit_group: its duplicate group's name, or its own id."""
    train = images[images["split"] == "train"]
    named = groups[groups["split"] == "train"].set_index("id")["group"]
    return pd.DataFrame({"id": train["id"], GROUP_COLUMN: train["id"].map(named).fillna(train["id"])})


def run_audit(cfg: Config) -> dict:
    comp, _ = load_checked(cfg)
    images = _images(cfg, comp)
    say(f"audit: hashing {len(images)} images ({(images['split'] == 'train').sum()} train, "
        f"{(images['split'] == 'test').sum()} test, {(images['split'] == 'extra').sum()} extra)")
    _, checked = checked_images(cfg, comp)  # every image's content hash, kept by the image check
    groups, side = duplicate_groups(images, [checked[p][2] for p in images["path"]], cfg.audit.near_distance)
    suspects, source = label_suspects(cfg, comp, cfg.audit.suspects)
    folds_known = layout.folds_csv(cfg).is_file()
    by_group = groups.drop_duplicates("group")
    counts = {"images": len(images), "groups": len(by_group), "exact": int((by_group["kind"] == "exact").sum()),
              "near": int((by_group["kind"] == "near").sum()), "folds_known": folds_known,
              **{flag: int(by_group["flags"].str.contains(flag).sum()) for flag in FLAGS},
              "suspects": 0 if suspects is None else len(suspects)}
    id_col = cfg.data.id_column
    groups_csv = cfg.run_dir / layout.AUDIT_GROUPS_CSV
    advice = []
    if counts["straddles_folds"]:
        advice.append(f"{counts['straddles_folds']} duplicate group(s) straddle folds, so the CV scores copies of "
                      f"training images: make folds with OVERRIDES=\"folds.strategy=stratified_group "
                      f"folds.group_column={GROUP_COLUMN} folds.groups_csv={groups_csv}\", then retrain")
    elif not folds_known and counts["groups"]:
        advice.append("no folds.csv yet: run make folds, then make audit again to see which groups straddle folds")
    if side < SMALL_SIDE and counts["near"]:
        advice.append(f"the images are small (median shorter side {side} px): a perceptual hash of so few pixels "
                      "also joins look-alikes that are not the same picture; judge the near groups by eye, or lower "
                      "audit.near_distance")
    if counts["conflicting_labels"]:
        advice.append(f"{counts['conflicting_labels']} group(s) of the same picture carry different labels: "
                      "correct them with data.relabel, or leave them out of training with data.drop_ids")
    table = pd.concat([groups, suspects] if suspects is not None else [groups], ignore_index=True)
    columns = ["kind", "group", "id", "split", "fold", "label", "distance", "flags", "p_label", "error",
               "predicted", "path"]
    table = table.reindex(columns=columns).rename(columns={"id": id_col})
    artifacts.write_csv(cfg.run_dir / layout.AUDIT_CSV, table)
    artifacts.write_csv(groups_csv, audit_groups(images, groups).rename(columns={"id": id_col}))
    page = audit_page(cfg, counts, groups, suspects, source, advice)
    artifacts.write_text(cfg.run_dir / layout.AUDIT_HTML, page)
    say(f"audit: {counts['groups']} duplicate group(s) ({counts['exact']} exact, {counts['near']} near; "
        + ", ".join(f"{counts[f]} {f.replace('_', ' ')}" for f in FLAGS) + f"); {source}")
    for line in advice:
        say(line)
    say(f"wrote {cfg.run_dir / layout.AUDIT_HTML}, {cfg.run_dir / layout.AUDIT_CSV}, {groups_csv}")
    return counts
