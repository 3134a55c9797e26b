"""`make kaggle-dataset NAME=x` and `make kaggle-submit NAME=x MESSAGE=...`: the official `kaggle`
command line (the kaggle extra), called with what podium has checked.

- kaggle-dataset builds runs/x/bundle/ again from the current folds (refused if any is stale),
  writes its dataset-metadata.json and uploads it as a private dataset, or as a new version of it
  when it exists (`kaggle datasets status` answers).
- kaggle-submit submits submissions/x.csv to `kaggle.competition` with a message that carries the
  CV score and the git commit, after checking that the file is current (what make submit would
  write now, from current folds) and passes the checks make submit applies.

Credentials stay where the kaggle command line reads them (kaggle.json, or KAGGLE_USERNAME and
KAGGLE_KEY); podium only looks whether they are there, and reads the user name for a dataset's id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from podium import artifacts
from podium.config import Config
from podium.console import say
from podium.errors import PodiumError
from podium.evaluate.submission import check_submission, submission_kind
from podium.runs import layout
from podium.runs.finished import is_blend, saved_config
from podium.runs.provenance import provenance
from podium.stages.bundle import run_bundle
from podium.stages.current import check_blend, load_checked
from podium.stages.submit import plan_submission

METADATA = "dataset-metadata.json"  # the file the kaggle command line reads in the uploaded folder
CREDENTIALS_HELP = ("put kaggle.json (kaggle.com > Settings > API > Create New Token) in ~/.kaggle/, or set "
                    "KAGGLE_USERNAME and KAGGLE_KEY")


def kaggle_command() -> str:
    """The `kaggle` executable: on PATH first, else beside this Python (the .venv's bin/)."""
    found = shutil.which("kaggle")
    if found:
        return found
    beside = Path(sys.executable).parent / "kaggle"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise PodiumError("the kaggle command line is not installed: make install brings it (the kaggle extra), "
                      "or .venv/bin/pip install kaggle")


def _config_dirs() -> list[Path]:
    dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    return dirs + [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]


def kaggle_user() -> str | None:
    """The Kaggle user name the kaggle command line will act as; refused when it has no credentials.
    None: credentials without a user name (an API token)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return os.environ["KAGGLE_USERNAME"]
    for folder in _config_dirs():
        path = folder / "kaggle.json"
        if path.is_file():
            try:
                return str(json.loads(path.read_text())["username"])
            except (OSError, ValueError, KeyError):
                raise PodiumError(f"{path}: not a kaggle.json with a username and key ({CREDENTIALS_HELP})") from None
    if os.environ.get("KAGGLE_API_TOKEN") or any((d / "access_token").is_file() for d in _config_dirs()):
        return None
    raise PodiumError(f"no Kaggle credentials: {CREDENTIALS_HELP}")


def _run(argv: list[str]) -> int:
    say("$ " + " ".join(argv))
    return subprocess.run(argv).returncode


def _named(cfg: Config, name: str) -> Config:
    return saved_config(cfg.runs_dir, name) if name and name != cfg.experiment else cfg


def _competition(cfg: Config) -> str:
    if not cfg.kaggle.competition:
        raise PodiumError("config key 'kaggle.competition' is not set: the competition's slug, as in "
                          "kaggle.com/competitions/<slug>")
    return cfg.kaggle.competition


def dataset_id(cfg: Config, user: str | None) -> str:
    """kaggle.dataset, or <user>/<competition>-<experiment> as a Kaggle slug (6 to 50 characters,
    lowercase letters, digits and hyphens)."""
    if cfg.kaggle.dataset:
        if not re.fullmatch(r"[^/\s]+/[a-z0-9-]{6,50}", cfg.kaggle.dataset):
            raise PodiumError(f"config key 'kaggle.dataset': '{cfg.kaggle.dataset}' is not <owner>/<slug> (a slug "
                              "is 6 to 50 lowercase letters, digits and hyphens)")
        return cfg.kaggle.dataset
    if user is None:
        raise PodiumError("the Kaggle credentials carry no user name (an API token): set config key "
                          "'kaggle.dataset' to <your user name>/<slug>")
    slug = re.sub(r"[^a-z0-9]+", "-", f"{_competition(cfg)}-{cfg.experiment}".lower()).strip("-")[:50].strip("-")
    return f"{user}/{slug.ljust(6, '0')}"


def run_kaggle_dataset(cfg: Config, *, name: str = "") -> str:
    """Upload (or version) runs/<name>/bundle/ as a private Kaggle dataset; returns its id."""
    cfg = _named(cfg, name)
    command = kaggle_command()
    dataset = dataset_id(cfg, kaggle_user())
    bundle = run_bundle(cfg)  # from the current folds, or refused
    title = f"{cfg.kaggle.competition or dataset.split('/')[1]} {cfg.experiment} podium bundle"[:50]
    artifacts.write_json(bundle / METADATA, {"title": title, "id": dataset, "licenses": [{"name": "CC0-1.0"}]})
    exists = subprocess.run([command, "datasets", "status", dataset], capture_output=True, text=True).returncode == 0
    commit = provenance()["git_commit"] or "no git commit"
    if exists:
        argv = [command, "datasets", "version", "-p", str(bundle), "-m", f"{cfg.experiment} at {commit[:12]}",
                "--dir-mode", "zip", "-q"]
    else:
        argv = [command, "datasets", "create", "-p", str(bundle), "--dir-mode", "zip", "-q"]
    code = _run(argv)
    if code != 0:
        raise PodiumError(f"kaggle datasets {'version' if exists else 'create'} exited with code {code}")
    say(f"{'new version of' if exists else 'created'} private dataset {dataset} (kaggle.com/datasets/{dataset}); "
        f"attach it to the offline kernel and run predict.py from it")
    return dataset


def _submission(cfg: Config) -> Path:
    """submissions/<name>.csv if it is current; refused (one line) otherwise."""
    if is_blend(cfg.runs_dir, cfg.experiment):
        check_blend(cfg.runs_dir, cfg.experiment)  # every member current and the blend made from them
        return layout.submission_path(cfg)
    plan = plan_submission(cfg)  # refused when a fold is missing or stale
    if not plan.is_current(cfg):
        raise PodiumError(f"{plan.out} is not what make submit writes from the current folds (missing, edited, or "
                          f"older than them): run make submit{'' if cfg.experiment == 'default' else ' CONFIG=...'} "
                          "first")
    return plan.out


def run_kaggle_submit(cfg: Config, *, name: str = "", message: str = "") -> None:
    cfg = _named(cfg, name)
    competition = _competition(cfg)
    command = kaggle_command()
    kaggle_user()  # refused here without credentials, before anything is checked or sent
    path = _submission(cfg)
    comp, _ = load_checked(cfg)
    sub = pd.read_csv(path, dtype={cfg.data.id_column: str})
    try:
        check_submission(sub, comp, cfg, submission_kind(comp, cfg))
    except PodiumError as exc:
        raise PodiumError(f"{path}: {exc}") from None
    cv = artifacts.read_json(layout.cv_json(cfg))
    facts = provenance()
    commit = (facts["git_commit"] or "no git")[:12] + ("-dirty" if facts["git_dirty"] else "")
    text = f"{cfg.experiment}: CV {cv['metric']} {cv['score']:.5f} (OOF), commit {commit}"
    text = f"{message.strip()} | {text}" if message.strip() else text
    code = _run([command, "competitions", "submit", competition, "-f", str(path), "-m", text])
    if code != 0:
        raise PodiumError(f"kaggle competitions submit exited with code {code}")
    say(f"submitted {path} to {competition}: \"{text}\" (kaggle competitions submissions {competition} lists it)")
