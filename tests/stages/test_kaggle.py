"""`make kaggle-dataset` / `make kaggle-submit` with the kaggle command line replaced by a stub on
PATH that records its arguments and the folder it was given: the right calls, and every refusal
before any call (no credentials, no competition, a stale or missing submission, stale folds)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from podium.runs import layout
from podium.stages.submit import run_submit

from conftest import ok, podium, tiny_config, write_config
from helpers import fake_experiment

STUB = """#!{python}
import json, os, sys
args = sys.argv[1:]
entry = {{"args": args}}
if "-p" in args:
    folder = args[args.index("-p") + 1]
    entry["files"] = sorted(os.listdir(folder))
    entry["metadata"] = json.load(open(os.path.join(folder, "dataset-metadata.json")))
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps(entry) + "\\n")
sys.exit(int(os.environ.get("STUB_STATUS_RC", "1")) if args[:2] == ["datasets", "status"] else 0)
"""
SECRET = "0123456789abcdef-secret"


@pytest.fixture
def kaggle(tmp_path, competition):
    stub_dir, home = tmp_path / "bin", tmp_path / "home"
    stub_dir.mkdir()
    home.mkdir()
    (stub_dir / "kaggle").write_text(STUB.format(python=sys.executable))
    (stub_dir / "kaggle").chmod(0o755)
    cfg = tiny_config(competition, tmp_path / "runs", kaggle={"competition": "my-comp"},
                      submissions_dir=str(tmp_path / "subs"))
    fake_experiment(cfg, seed=0)
    path = write_config(cfg, tmp_path / "t.yaml")
    log = tmp_path / "calls.jsonl"
    env = {"PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(home), "STUB_LOG": str(log),
           "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": SECRET, "KAGGLE_CONFIG_DIR": str(home / "none")}

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    return cfg, path, env, calls, home


def test_dataset_is_created_then_versioned_from_a_fresh_bundle(kaggle):
    cfg, path, env, calls, home = kaggle
    out = ok(podium("kaggle-dataset", "--config", str(path), env=env))
    status, create = calls()
    assert status["args"] == ["datasets", "status", "alice/my-comp-t"]
    bundle = str(cfg.run_dir / layout.BUNDLE)
    assert create["args"] == ["datasets", "create", "-p", bundle, "--dir-mode", "zip", "-q"]
    assert create["metadata"]["id"] == "alice/my-comp-t" and create["metadata"]["licenses"] == [{"name": "CC0-1.0"}]
    assert {"predict.py", "meta.json", "config.yaml", "dataset-metadata.json"} <= set(create["files"])
    assert "private dataset alice/my-comp-t" in out
    ok(podium("kaggle-dataset", "--config", str(path), env={**env, "STUB_STATUS_RC": "0"}))
    version = calls()[-1]
    assert version["args"][:3] == ["datasets", "version", "-p"] and version["args"][-3:] == ["--dir-mode", "zip", "-q"]
    assert version["args"][version["args"].index("-m") + 1].startswith("t at ")
    # credentials are read, never written
    assert not any(home.rglob("*"))
    assert not any(SECRET in p.read_text(errors="ignore") for p in cfg.run_dir.rglob("*.json"))


def test_submit_sends_the_current_file_with_the_cv_score_and_refuses_stale_work(kaggle):
    cfg, path, env, calls, _ = kaggle
    # no make submit yet: refused, the command line never called
    out = podium("kaggle-submit", "--config", str(path), "--message", "first try", env=env)
    assert out.returncode == 2 and "not what make submit writes" in out.stderr and calls() == []
    sub_path = run_submit(cfg)
    ok(podium("kaggle-submit", "--config", str(path), "--message", "first try", env=env))
    (call,) = calls()
    assert call["args"][:5] == ["competitions", "submit", "my-comp", "-f", str(sub_path)]
    message = call["args"][call["args"].index("-m") + 1]
    oof = pd.read_csv(cfg.run_dir / layout.OOF_CSV, dtype={"id": str}).set_index("id")
    train = pd.read_csv(cfg.data_dir / "train.csv", dtype={"id": str}).set_index("id")
    probs = oof.loc[train.index, ["a", "b", "c"]].to_numpy()
    accuracy = accuracy_score(train["label"], np.array(["a", "b", "c"])[probs.argmax(axis=1)])
    assert message.startswith(f"first try | t: CV accuracy {accuracy:.5f} (OOF), commit ")
    # the kaggle section does not change what the submission holds: still current under another competition
    ok(podium("kaggle-submit", "--config", str(path), "kaggle.competition=another-one", env=env))
    assert calls()[-1]["args"][:3] == ["competitions", "submit", "another-one"]

    # an edited submission is not the one make submit wrote: refused
    edited = pd.read_csv(sub_path)
    edited.loc[0, "label"] = "b" if edited.loc[0, "label"] != "b" else "c"
    edited.to_csv(sub_path, index=False)
    out = podium("kaggle-submit", "--config", str(path), env=env)
    assert out.returncode == 2 and "not what make submit writes" in out.stderr
    # a config the folds were not trained with: refused as stale folds
    out = podium("kaggle-submit", "--config", str(path), "train.lr=0.5", env=env)
    assert out.returncode == 2 and "fold 0 was trained with train.lr=0.01" in out.stderr
    assert len(calls()) == 2


def test_missing_credentials_or_competition_are_refused_before_any_call(kaggle, tmp_path):
    cfg, path, env, calls, _ = kaggle
    run_submit(cfg)
    bare = {k: v for k, v in env.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    out = podium("kaggle-submit", "--config", str(path), env=bare)
    assert out.returncode == 2 and "no Kaggle credentials" in out.stderr
    no_comp = write_config(cfg.model_copy(update={"kaggle": cfg.kaggle.model_copy(update={"competition": None})}),
                           tmp_path / "t.yaml")
    out = podium("kaggle-submit", "--config", str(no_comp), env=env)
    assert out.returncode == 2 and "kaggle.competition" in out.stderr
    assert calls() == []
