"""`make bundle`: runs/<exp>/bundle/, a folder to upload as a Kaggle dataset for an offline kernel.

It holds every fold's weights, the resolved config, the class list, a podium wheel and
predict.py. `python predict.py --data-dir DIR --out FILE`, run from any folder in an environment
that has podium's dependencies (torch, timm, albumentations, ...), writes the submission that
`make submit` writes for that competition folder, with no repo and no internet.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import podium
from podium import __version__, artifacts
from podium.config import Config
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.cv import read_postprocess
from podium.runs import layout
from podium.runs.finished import is_blend, saved_config
from podium.stages.current import check_blend, current_oof, load_checked

PREDICT_PY = '''#!/usr/bin/env python3
"""Write a submission with this bundle's fold models: python predict.py --data-dir DIR --out FILE"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(sorted(HERE.glob("podium-*.whl"))[-1]))  # podium itself, from the bundled wheel

from podium.predict.kernel import predict_bundle  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data-dir", required=True, help="the competition folder (test.csv, sample submission, images)")
parser.add_argument("--out", required=True, help="the submission file to write")
parser.add_argument("--batch-size", type=int, default=None)
args = parser.parse_args()
predict_bundle(HERE, Path(args.data_dir), Path(args.out), args.batch_size)
'''


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(out_dir: Path) -> Path:
    """A pure-Python wheel of the podium package as installed here (importable from the zip)."""
    package = Path(podium.__file__).resolve().parent
    name = f"podium-{__version__}-py3-none-any.whl"
    dist = f"podium-{__version__}.dist-info"
    files = {f"podium/{p.relative_to(package).as_posix()}": p.read_bytes()
             for p in sorted(package.rglob("*.py"))}
    files[f"{dist}/METADATA"] = (f"Metadata-Version: 2.1\nName: podium\nVersion: {__version__}\n"
                                 "Summary: cross-validated image-classification competition pipeline\n").encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: podium\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return artifacts.write_bytes(out_dir / name, buf.getvalue())


def _competition_meta(comp) -> dict:
    """What predict.py needs of the competition beyond its files: classes, columns, target kind."""
    return {"classes": comp.classes, "task": comp.task, "prob_columns": comp.prob_columns,
            "target_columns": list(comp.target_columns), "target_kind": comp.target_kind}


def _write_experiment(cfg: Config, comp, dest: Path) -> int:
    """One experiment's part of a bundle: its config, meta.json and every fold's weights."""
    # The weights are in the bundle: the kernel needs neither a pretrained file nor the hub.
    tree = {**cfg.model_dump(mode="json"), "model": cfg.model.without_weights().model_dump(mode="json")}
    artifacts.write_yaml(dest / layout.BUNDLE_CONFIG, tree)
    post = read_postprocess(cfg)
    n = cfg.folds.n_splits
    artifacts.write_json(dest / layout.BUNDLE_META, {
        **_competition_meta(comp), "folds": n,
        # a regression fold's (mean, std) that its head learned in; null otherwise
        "target_scales": [layout.fold_record(cfg, k).get("info", {}).get("target_scale") for k in range(n)],
        # with data.features, each fold's metadata encoding (fitted on its training rows); null otherwise
        "features": [layout.fold_record(cfg, k).get("info", {}).get("features") for k in range(n)]
        if cfg.data.features else None,
        # make oof's weight of the TTA mean against the plain view, applied as make submit does
        "tta_weight": layout.tta_weight(cfg),
        # what make oof fitted on the OOF (thresholds, cut-points, temperature), applied as make submit does
        "postprocess": post.to_json() if post is not None else None,
    })
    for k in range(n):
        artifacts.write_bytes(dest / layout.bundle_weights(k), (layout.fold_dir(cfg, k) / layout.WEIGHTS).read_bytes())
    return n


def run_bundle(cfg: Config, *, name: str = "") -> Path:
    """runs/<exp>/bundle/ for an experiment; for a blend, every member's folds and the blend's
    weights, so predict.py predicts with every member and blends as make blend did. `name`: another
    run under runs_dir (a blend, an experiment), bundled with the config it was made with."""
    cfg = saved_config(cfg.runs_dir, name) if name else cfg
    out = cfg.run_dir / layout.BUNDLE
    tmp = cfg.run_dir / f".{layout.BUNDLE}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if is_blend(cfg.runs_dir, cfg.experiment):
        check_blend(cfg.runs_dir, cfg.experiment)  # every member current, the blend made from them
        spec = artifacts.read_json(cfg.run_dir / layout.BLEND_JSON)
        nested = [m for m in spec["members"] if is_blend(cfg.runs_dir, m)]
        if nested:
            raise PodiumError(f"blend {cfg.experiment}: member(s) {', '.join(nested)} are blends themselves; a "
                              "bundle ships the experiments of one blend (blend their experiments directly)")
        folds = 0
        for member in spec["members"]:
            mcfg = saved_config(cfg.runs_dir, member)
            comp, _ = load_checked(mcfg)
            folds += _write_experiment(mcfg, comp, tmp / layout.BUNDLE_MEMBERS / member)
        comp, _ = load_checked(cfg)
        post = read_postprocess(cfg)
        artifacts.write_json(tmp / layout.BUNDLE_META, {**_competition_meta(comp),
                                                 "postprocess": post.to_json() if post is not None else None})
        artifacts.write_yaml(tmp / layout.BUNDLE_CONFIG, cfg.model_dump(mode="json"))
        artifacts.write_json(tmp / layout.BLEND_JSON, spec)
        what = f"{len(spec['members'])} members' {folds} fold weights, blend.json"
    else:
        # Every fold trained and current for this config (a bundle never ships a stale fold's
        # weights), and the post-processing fitted on their OOF.
        current_oof(cfg)
        comp, _ = load_checked(cfg)
        what = f"{_write_experiment(cfg, comp, tmp)} fold weights"
    build_wheel(tmp)
    artifacts.write_text(tmp / "predict.py", PREDICT_PY)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    say(f"wrote {out}/ ({size:.1f} MB): {what}, config.yaml, meta.json, a podium wheel, predict.py")
    return out
