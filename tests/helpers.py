"""Finished runs made of random fold files, recorded as trained the way training records them
(for the tests of the stages that read trained folds without training anything), and a
Hugging Face hub cache holding weights, as a download would leave it."""

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from podium import artifacts
from podium.runs import layout
from podium.stages.current import data_fingerprint, load_checked
from podium.stages.folds import run_folds
from podium.stages.oof import run_oof


def fake_fold_outputs(cfg, rng, cols, extra_oof_row: int | None = None):
    """Random probability files for every fold, recorded as trained the way training records
    them (weights and history stand in as small files). `extra_oof_row`: that fold's oof.csv
    holds one row twice."""
    run = cfg.run_dir
    folds = pd.read_csv(run / "folds.csv", dtype={"id": str})
    test = pd.read_csv(cfg.data_dir / "test.csv", dtype={"id": str})
    comp, csv_hash = load_checked(cfg)
    data_hash = data_fingerprint(cfg, comp, csv_hash)
    for k in range(cfg.folds.n_splits):
        out = run / f"fold{k}"
        out.mkdir(parents=True, exist_ok=True)
        for name, ids in (("oof.csv", folds.loc[folds["fold"] == k, "id"]), ("test.csv", test["id"])):
            p = rng.random((len(ids), len(cols)))
            if len(cols) > 1:
                p /= p.sum(axis=1, keepdims=True)
            df = pd.DataFrame({"id": ids.to_numpy(), **{c: p[:, j] for j, c in enumerate(cols)}})
            if name == "oof.csv" and k == extra_oof_row:
                df = pd.concat([df, df.iloc[[0]]])
            df.to_csv(out / name, index=False)
        (out / "model.safetensors").write_bytes(b"weights")
        (out / "history.csv").write_text("epoch\n0\n")
        layout.mark_trained(cfg, k, layout.train_inputs(cfg, k, data_hash), info={})


def fake_experiment(cfg, seed: int, cols=("a", "b", "c")):
    """A finished experiment made of random fold files: folds, predictions recorded as trained,
    the resolved config where training saves it, the OOF joined."""
    run_folds(cfg)
    fake_fold_outputs(cfg, np.random.default_rng(seed), list(cols))
    artifacts.write_yaml(layout.fold_dir(cfg, 0) / layout.CONFIG_YAML, cfg.model_dump(mode="json"))
    run_oof(cfg, show=False)
    return cfg


def write_hub_cache(home, repo: str, tensors: dict[str, torch.Tensor]):
    """huggingface_hub's cache under HF_HOME=`home` holding `tensors` as `repo`'s model.safetensors:
    refs/main naming a snapshot with the file, the layout a download leaves. Returns the file."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    path = folder / "snapshots" / revision / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
