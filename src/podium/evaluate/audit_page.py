"""The page `make audit` writes: one self-contained HTML file (thumbnails inline), so it opens
from disk, can be mailed, and survives the run folder being moved."""

from __future__ import annotations

import base64
import html

import pandas as pd

from podium.config import Config
from podium.data.images import decode_rgb, thumbnail_jpeg

GROUPS_SHOWN = 200  # every group is in audit.csv; the page shows the flagged ones first
FLAG_ORDER = {"conflicting_labels": 0, "straddles_folds": 1, "train_and_test": 2}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.group { margin: 14px 0; padding: 8px; border: 1px solid #ccc; border-radius: 6px; }
.group.flagged { border-color: #c0392b; background: #fdf2f0; }
figure { display: inline-block; margin: 4px 8px; text-align: center; font-size: 12px; vertical-align: top; }
figure img, td img { display: block; height: 96px; width: auto; max-width: 160px; margin: auto; }
img.tiny { image-rendering: pixelated; }
.flag { color: #c0392b; font-weight: 600; margin-right: 8px; }
.advice { background: #fff7dd; padding: 8px 12px; border-left: 4px solid #e0a800; }
"""


def _img(path: str) -> str:
    """The image inline, shown 96 px high (a tiny image enlarged with its pixels kept sharp)."""
    jpeg = thumbnail_jpeg(path)
    shape = decode_rgb(jpeg).shape
    tiny = " class='tiny'" if max(shape[:2]) < 64 else ""
    return f"<img{tiny} alt='{html.escape(path)}' src='data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}'>"


def _figure(row, extra: str = "") -> str:
    fold = "" if pd.isna(row.fold) else f" · fold {int(row.fold)}"
    label = f" · {html.escape(str(row.label))}" if row.label != "" and not pd.isna(row.label) else ""
    return (f"<figure>{_img(row.path)}<figcaption>{html.escape(str(row.id))}<br>{row.split}{fold}{label}"
            f"{extra}</figcaption></figure>")


def _groups_html(groups: pd.DataFrame) -> str:
    if groups.empty:
        return "<p>No duplicates found.</p>"
    firsts = groups.drop_duplicates("group").copy()
    firsts["rank"] = firsts["flags"].map(lambda f: min([FLAG_ORDER[x] for x in f.split()] or [9]))
    order = firsts.sort_values(["rank", "group"], kind="stable")["group"].tolist()[:GROUPS_SHOWN]
    parts = []
    for name in order:
        part = groups[groups["group"] == name]
        flags = part["flags"].iloc[0].split()
        head = "".join(f"<span class='flag'>{f.replace('_', ' ')}</span>" for f in flags)
        figures = "".join(_figure(r, f"<br>distance {int(r.distance)}" if i else "")
                          for i, r in enumerate(part.itertuples()))
        parts.append(f"<div class='group{' flagged' if flags else ''}' id='{name}'>"
                     f"<b>{name}</b> · {part['kind'].iloc[0]} · {len(part)} images {head}<br>{figures}</div>")
    more = len(firsts) - len(order)
    return "".join(parts) + (f"<p>{more} more group(s) in audit.csv.</p>" if more > 0 else "")


def _suspects_html(suspects: pd.DataFrame | None, source: str) -> str:
    if suspects is None:
        return f"<p>{html.escape(source)}.</p>"
    regression = suspects["p_label"].isna().all()
    what = "error" if regression else "OOF probability of its label"
    rows = []
    for r in suspects.itertuples():
        value = f"{r.error:.4g}" if regression else f"{r.p_label:.4f}"
        rows.append(f"<tr><td>{_img(r.path)}</td><td>{html.escape(str(r.id))}</td><td>{int(r.fold)}</td>"
                    f"<td>{html.escape(str(r.label))}</td><td>{value}</td><td>{html.escape(str(r.predicted))}</td></tr>")
    return (f"<p>{html.escape(source)}: the rows the out-of-fold model contradicts most, first. A wrong label, "
            "an ambiguous image, or a hard case: look before acting. To act: <code>data.relabel</code> (training "
            "learns the corrected label) or <code>data.drop_ids</code> (not trained on); either way the CV is "
            "still computed on every row with its original label.</p>"
            f"<table><tr><th>image</th><th>id</th><th>fold</th><th>label</th><th>{what}</th><th>predicted</th></tr>"
            + "".join(rows) + "</table>")


def audit_page(cfg: Config, counts: dict, groups: pd.DataFrame, suspects: pd.DataFrame | None, source: str,
               advice: list[str]) -> str:
    summary = [("images", counts["images"]), ("duplicate groups", counts["groups"]),
               ("of them exact (same file content)", counts["exact"]),
               ("near (alike to the perceptual hash)", counts["near"]),
               ("with different labels", counts["conflicting_labels"]),
               ("straddling folds" + ("" if counts["folds_known"] else " (no folds.csv yet)"),
                counts["straddles_folds"]),
               ("joining train and test", counts["train_and_test"]), ("label suspects listed", counts["suspects"])]
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in summary)
    tips = "".join(f"<p class='advice'>{html.escape(a)}</p>" for a in advice)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>audit: {html.escape(cfg.experiment)}</title>"
            f"<style>{STYLE}</style></head><body><h1>Data audit: {html.escape(cfg.experiment)}</h1>"
            f"<p>Competition <code>{html.escape(str(cfg.data_dir))}</code>; near-duplicates: perceptual hashes within "
            f"{cfg.audit.near_distance} of 64 bits.</p><table>{table}</table>{tips}"
            f"<h2>Duplicate groups</h2>{_groups_html(groups)}"
            f"<h2>Label suspects</h2>{_suspects_html(suspects, source)}</body></html>")
