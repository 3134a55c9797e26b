"""The run folder: the one module that spells its file names, and the owner of a fold's
done-record and of the shape in which a fold's predictions are read.

```
runs/<exp>/folds.csv, oof.csv, cv.json, postprocess.json, schedule.csv/.png, ablation.csv/.png,
           report.html, audit.html, audit.csv, audit_groups.csv, bundle/, <stage>.done.json
runs/<exp>/fold<k>/worker.json, config.yaml, history.csv, history.png, model.safetensors, oof.csv,
                   test.csv, train.done.json, checkpoint/
runs/<blend>/blend.json, config.yaml, oof.csv, test.csv, cv.json, postprocess.json, blend.done.json
runs/.cache/: what experiments on the same images share (decoded images, image checks, speed)
submissions/<exp>.csv, <exp>.folds-0-2.csv
```

A fold counts as trained only while its `train.done.json` says it was trained under the config,
folds.csv and competition data that the reader runs with, and its files are the ones it wrote.
Every stage that reads a fold (oof, submit, report, bundle) asks `check_fold` first, so a fold
trained under another config, or one whose retrain was killed, is never read as current.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from podium import artifacts
from podium.config import Config, config_hash
from podium.config.schema import ADDED_KEYS
from podium.errors import PodiumError
from podium.evaluate.tta_weight import mixed
from podium.runs import records

FOLDS_CSV = "folds.csv"
OOF_CSV = "oof.csv"  # a fold's, and the run's joined one
TEST_CSV = "test.csv"
# With TTA (predict.tta), a fold's predictions of the plain view beside oof.csv / test.csv (the TTA
# mean): make oof scores the run with and without TTA from one prediction pass.
OOF_PLAIN_CSV = "oof_plain.csv"
TEST_PLAIN_CSV = "test_plain.csv"
# With checkpoint averaging (train.average_top_k > 1), the fold's OOF from its best epoch alone
# (oof.csv again when fewer than two epochs could be averaged).
OOF_BEST_EPOCH_CSV = "oof_best_epoch.csv"
FOLD_VARIANTS = (OOF_PLAIN_CSV, TEST_PLAIN_CSV, OOF_BEST_EPOCH_CSV)
TTA_WEIGHT_JSON = "tta_weight.json"  # make oof: the weight of the TTA mean against the plain view, fitted on the OOF
TTA_JSON = "tta.json"  # benchmarks/tta.py: the run's OOF under several TTA settings
WEIGHTS = "model.safetensors"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
CONFIG_YAML = "config.yaml"
WORKER_JSON = "worker.json"
POSTPROCESS_JSON = "postprocess.json"  # the run's: what make oof fitted on the whole OOF
BLEND_JSON = "blend.json"  # a blend's run folder: its members, method and weights
CHECKPOINTS = "checkpoint"
AUDIT_HTML, AUDIT_CSV = "audit.html", "audit.csv"  # make audit: duplicates and label suspects
AUDIT_GROUPS_CSV = "audit_groups.csv"  # every train row's duplicate group, for folds.groups_csv
CV_JSON = "cv.json"  # the run's score: the metric, each fold's, the OOF's (make oof, make blend)
SCHEDULE_CSV = "schedule.csv"
SCHEDULE_PNG = "schedule.png"
ABLATION_DIR = "ablation"  # one experiment per variant under it
ABLATION_CSV = "ablation.csv"
ABLATION_PNG = "ablation.png"
TUNE_DIR = "tune"  # make tune: one experiment per trial under it
TUNE_DB = "tune.db"  # the Optuna study (SQLite), shared by the workers of make -j N tune
TUNE_CSV = "tune.csv"  # every trial: number, state, score, parameters, run folder
TUNE_BEST_YAML = "best.yaml"  # the best trial's whole config, ready for make cv
TUNE_HISTORY_PNG, TUNE_IMPORTANCE_PNG = "tune_history.png", "tune_importance.png"
PRUNED_JSON = "pruned.json"  # in fold<k>/ of a tune trial stopped by the pruner
LR_FIND_CSV, LR_FIND_PNG = "lr_find.csv", "lr_find.png"  # make lr-find
REPORT_HTML = "report.html"
REPORT_FIGURES = "report"  # the report's charts
LOGS = "logs"  # accelerate's trackers (log_with)

# The stages whose done-records (<stage>.done.json, see records.py) sit in a run folder.
TRAIN_STAGE = "train"  # in fold<k>/
FOLDS_STAGE = "folds"
OOF_STAGE = "oof"
BLEND_STAGE = "blend"

# A bundle (make bundle): what predict.py reads, for an experiment and for each blend member.
BUNDLE = "bundle"
BUNDLE_CONFIG = "config.yaml"
BUNDLE_META = "meta.json"
BUNDLE_MEMBERS = "members"  # a blend's: members/<name>/ holds each member's part

# The config keys that do not change what a fold learns or predicts: where outputs go and how a
# run is watched. Every other key, in any section present or future, makes a trained fold stale
# when it changes.
NOT_TRAINING = ("experiment", "runs_dir", "submissions_dir", "submission", "postprocess", "log_with", "checkpoint",
                "audit", "tune", "kaggle")

# The config keys that decide the folds; changing e.g. the epochs must not reshuffle them.
FOLD_SECTIONS = ("seed", "data", "folds")


def shared_dir(cfg: Config) -> Path:
    """`<runs_dir>/.cache/`: what experiments on the same images share (the decoded-image cache,
    the per-image check results), so a second experiment or seed decodes nothing again, and the
    speed settings measured on this machine."""
    return Path(cfg.runs_dir) / ".cache"


def image_cache_dir(cfg: Config) -> Path:
    return shared_dir(cfg) / "images"


def image_check_file(cfg: Config) -> Path:
    return shared_dir(cfg) / "image-check.json"


def speed_cache(cfg: Config) -> Path:
    """The precision and memory format `auto` measured fastest, per machine, model, size and batch."""
    return shared_dir(cfg) / "speed.json"


def fold_name(fold: int) -> str:
    return f"fold{fold}"


def fold_dir(cfg: Config, fold: int) -> Path:
    return cfg.run_dir / fold_name(fold)


def bundle_weights(fold: int) -> str:
    """A bundle's weights file of fold `fold`."""
    return f"{fold_name(fold)}.safetensors"


def cv_json(cfg: Config) -> Path:
    return cfg.run_dir / CV_JSON


def submission_path(cfg: Config, folds: list[int] | None = None) -> Path:
    """submissions/<exp>.csv; a submission from some folds only is named for them
    (<exp>.folds-0-2.csv), so it cannot be taken for the full one."""
    n = cfg.folds.n_splits
    if folds is None or sorted(folds) == list(range(n)):
        return Path(cfg.submissions_dir) / f"{cfg.experiment}.csv"
    return Path(cfg.submissions_dir) / f"{cfg.experiment}.folds-{'-'.join(map(str, sorted(folds)))}.csv"


def submit_stage(cfg: Config, folds: list[int]) -> str:
    """The done-record's name of a submission from `folds`: 'submit' for all of them."""
    return "submit" if len(folds) == cfg.folds.n_splits else f"submit-folds-{'-'.join(map(str, folds))}"


def is_trained(run: Path, fold: int) -> bool:
    """Fold `fold` of run folder `run` has a done-record (current or not)."""
    return records.record_path(run / fold_name(fold), TRAIN_STAGE).is_file()


def folds_csv(cfg: Config) -> Path:
    return cfg.run_dir / FOLDS_CSV


# The config keys that never change a submission's content: how the work around it is done.
NOT_SUBMISSION = ("audit", "tune", "kaggle", "log_with", "checkpoint")


def submission_sections(cfg: Config) -> tuple[str, ...]:
    """The top-level config keys a submission depends on: all but NOT_SUBMISSION."""
    return tuple(k for k in type(cfg).model_fields if k not in NOT_SUBMISSION)


def training_sections(cfg: Config) -> tuple[str, ...]:
    """The top-level config keys a trained fold depends on: all but NOT_TRAINING."""
    return tuple(k for k in type(cfg).model_fields if k not in NOT_TRAINING)


def flat_config(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'train.epochs': 12, ...}: dotted keys with JSON values, lists kept whole."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def training_config(cfg: Config) -> dict[str, object]:
    dumped = cfg.model_dump(mode="json")
    return flat_config({k: dumped[k] for k in training_sections(cfg)})


def train_inputs(cfg: Config, fold: int, data_hash: str, teachers: str = "") -> dict[str, str]:
    """What a trained fold depends on; its done-record holds these and is current while they match.
    `teachers`: a digest of the distillation / pseudo-label teachers' predictions, when there are any."""
    inputs = {"config": config_hash(cfg, training_sections(cfg)), "folds": artifacts.file_hash(folds_csv(cfg)),
              "data": data_hash, "fold": str(fold)}
    if teachers:
        inputs["teachers"] = teachers
    return inputs


def mark_trained(cfg: Config, fold: int, inputs: dict[str, str], info: dict) -> None:
    """The fold's done-record: its inputs, its outputs' hashes, and the training config in full,
    so that a reader can say which keys differ, not only that something did."""
    out = fold_dir(cfg, fold)
    variants = [out / n for n in FOLD_VARIANTS if (out / n).is_file()]
    records.mark_done(out, TRAIN_STAGE, inputs, [out / n for n in (HISTORY_CSV, WEIGHTS, OOF_CSV, TEST_CSV)] + variants,
                      info={**info, "config": training_config(cfg)})


def trained_info(cfg: Config, fold: int) -> dict:
    """What the fold's done-record says about its training (seconds, epochs, the final weights' epochs)."""
    return artifacts.read_json(records.record_path(fold_dir(cfg, fold), TRAIN_STAGE)).get("info", {})


def clear_fold(cfg: Config, fold: int) -> None:
    """Before a fold is (re)trained: its done-record first, then the predictions and weights it
    vouched for, so that a retrain killed at any moment leaves nothing that reads as current."""
    out = fold_dir(cfg, fold)
    records.forget(out, TRAIN_STAGE)
    for name in (OOF_CSV, TEST_CSV, WEIGHTS, HISTORY_PNG, PRUNED_JSON, *FOLD_VARIANTS):
        (out / name).unlink(missing_ok=True)


def _shown(value: object) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _trained_with(cfg: Config, fold: int, record: dict) -> dict[str, object] | None:
    saved = record.get("info", {}).get("config")
    if saved is not None:
        return saved
    try:  # records written before the config was kept in them: the fold's saved config
        tree = yaml.safe_load((fold_dir(cfg, fold) / CONFIG_YAML).read_text())
    except (OSError, yaml.YAMLError):
        return None
    tree.pop("provenance", None)
    return flat_config({k: tree[k] for k in training_sections(cfg) if k in tree})


def config_differences(then: dict[str, object], now: dict[str, object]) -> list[str]:
    """The dotted keys whose values differ; a key added since `then` was recorded differs only
    away from its neutral value (ADDED_KEYS)."""
    def same(k: str) -> bool:
        if k not in then and k in ADDED_KEYS:
            return now.get(k) == ADDED_KEYS[k]
        return then.get(k, "<unset>") == now.get(k, "<unset>")

    return [k for k in sorted(set(then) | set(now)) if not same(k)]


def stale_reason(cfg: Config, fold: int, data_hash: str, teachers: str = "") -> str | None:
    """None when fold `fold` is trained and current for this config and data; else why not, in
    one line that names the fold, what differs, and what to do."""
    out = fold_dir(cfg, fold)
    retrain = f"make train FOLD={fold}"
    try:
        record = artifacts.read_json(records.record_path(out, TRAIN_STAGE))
    except (OSError, ValueError):
        if (out / OOF_CSV).exists() or (out / CONFIG_YAML).exists():
            return f"fold {fold} did not finish training (no {out}/train.done.json): run {retrain}"
        return f"fold {fold} is not trained ({out}/ has no train.done.json): run {retrain} (or make cv)"
    saved, now = record.get("inputs", {}), train_inputs(cfg, fold, data_hash, teachers)
    if saved.get("config") != now["config"]:
        then = _trained_with(cfg, fold, record)
        if then is None:
            return f"fold {fold} was trained under another config: retrain it ({retrain})"
        current = training_config(cfg)
        keys = config_differences(then, current)
        shown = keys[:4]
        more = f" and {len(keys) - len(shown)} more" if len(keys) > len(shown) else ""
        was = ", ".join(f"{k}={_shown(then.get(k))}" for k in shown)
        says = ", ".join(f"{k}={_shown(current.get(k))}" for k in shown)
        return (f"fold {fold} was trained with {was}{more}; this config says {says}: retrain it ({retrain}), "
                f"or use the config it was trained with ({out / CONFIG_YAML})")
    if saved.get("folds") != now["folds"]:
        return f"fold {fold} was trained on another {folds_csv(cfg)} than the one there now: retrain it ({retrain})"
    if saved.get("teachers") != now.get("teachers"):
        names = ", ".join(sorted({t for t in (cfg.distill.teacher, cfg.pseudo.teacher) if t}))
        return f"fold {fold} was trained on other predictions of its teacher ({names}): retrain it ({retrain})"
    if saved.get("data") != now["data"]:
        return (f"fold {fold} was trained on other competition data (CSV files or images in {cfg.data.dir} "
                f"changed since): retrain it ({retrain})")
    for name, digest in record.get("outputs", {}).items():
        path = out / name
        if not path.is_file():
            return f"{path} is missing (fold {fold} wrote it when it finished): retrain it ({retrain})"
        if artifacts.file_hash(path) != digest:
            return f"{path} changed after fold {fold} finished training: retrain it ({retrain})"
    return None


def check_folds(cfg: Config, folds: list[int], data_hash: str, teachers: str = "") -> None:
    """Refuse, in one line, if any of `folds` is not trained and current."""
    for k in folds:
        why = stale_reason(cfg, k, data_hash, teachers)
        if why is not None:
            raise PodiumError(why)


def fold_record(cfg: Config, fold: int) -> dict:
    return artifacts.read_json(records.record_path(fold_dir(cfg, fold), TRAIN_STAGE))


# ---------------------------------------------------------------------------------------------
# Predictions: one shape from writer to readers.


@dataclass(frozen=True)
class Predictions:
    """A fold's predictions: `ids` (n,) as text and `probs` (n, C) float64, C = the competition's
    probability columns (1 for a binary task: P(class 1))."""

    ids: np.ndarray
    probs: np.ndarray

    def frame(self, columns: list[str], id_column: str) -> pd.DataFrame:
        return pd.DataFrame({id_column: self.ids, **{c: self.probs[:, j] for j, c in enumerate(columns)}})

    def in_order(self, ids) -> np.ndarray:
        """The probabilities of `ids`, in that order (every one of them must be here)."""
        at = pd.Index(self.ids).get_indexer(np.asarray(ids, dtype=object))
        if (at < 0).any():
            raise PodiumError(f"predictions hold no row for id(s) {list(np.asarray(ids)[at < 0][:5])}")
        return self.probs[at]


def prediction_frame(ids, probs: np.ndarray, columns: list[str], id_column: str) -> pd.DataFrame:
    """The file shape of oof.csv / test.csv: the id column, then one column per probability."""
    return Predictions(np.asarray(list(ids), dtype=object), np.asarray(probs).reshape(len(ids), -1)).frame(
        columns, id_column)


def read_predictions(path: Path, columns: list[str], id_column: str, expected_ids=None) -> Predictions:
    """oof.csv or test.csv of a fold; with `expected_ids`, refuse unless its ids are exactly those."""
    try:
        df = pd.read_csv(path, dtype={id_column: str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PodiumError(f"{path}: cannot read ({exc})") from None
    missing = [c for c in [id_column, *columns] if c not in df.columns]
    if missing:
        raise PodiumError(f"{path}: no column(s) {missing}; the competition's are {columns}")
    ids = df[id_column]
    if expected_ids is not None and (ids.duplicated().any() or set(ids) != set(expected_ids)):
        raise PodiumError(f"{path}: its ids are not exactly the rows it should hold; retrain that fold")
    return Predictions(ids.to_numpy(dtype=object), df[columns].to_numpy(dtype=np.float64))


def tta_weight(cfg: Config) -> float:
    """The weight make oof fitted between the TTA mean and the plain view (1: the TTA mean alone, as
    when none was fitted)."""
    path = cfg.run_dir / TTA_WEIGHT_JSON
    return float(artifacts.read_json(path)["weight"]) if path.is_file() else 1.0


def test_predictions(cfg: Config, folds: list[int], columns: list[str], test_ids, weight: float = 1.0) -> np.ndarray:
    """The mean of `folds`' test predictions in the order of `test_ids`; with a TTA weight below 1,
    each fold's TTA mean mixed with its plain view (test_plain.csv) as make oof chose."""
    total = 0.0
    for k in folds:
        probs = read_fold(cfg, k, TEST_CSV, columns, expected_ids=test_ids).in_order(test_ids)
        if weight != 1.0:
            plain = read_fold(cfg, k, TEST_PLAIN_CSV, columns, expected_ids=test_ids).in_order(test_ids)
            probs = mixed(probs, plain, weight)
        total = total + probs
    return total / len(folds)


def read_fold(cfg: Config, fold: int, which: str, columns: list[str], expected_ids=None) -> Predictions:
    """`which`: OOF_CSV or TEST_CSV of fold `fold` (check it with check_folds first)."""
    return read_predictions(fold_dir(cfg, fold) / which, columns, cfg.data.id_column, expected_ids)
