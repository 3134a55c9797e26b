"""`podium <command>`: parse the arguments, make the config once, call the stage.

One table (COMMANDS) maps each subcommand to the stage function that runs it, in the module of
podium.stages named for its Make target. A stage module is imported only when its command runs,
so `podium n-splits` (which the Makefile asks on every `make cv`) starts no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from podium.config import Config, load_config
from podium.console import say
from podium.errors import PodiumError


@dataclass(frozen=True)
class Option:
    """One command-line option; its `dest` is the stage function's keyword of the same name."""

    flags: tuple[str, ...]
    kwargs: dict


FOLD = Option(("--fold",), dict(type=int, required=True))
NPROC = Option(("--nproc",), dict(type=int, default=None, help="processes (default: one per GPU, or 1)"))
FOLDS = Option(("--folds",), dict(default="", help="some folds only, e.g. 0,2 (default: all)"))
NAME = Option(("--name",), dict(default="", help="another run under runs_dir, e.g. a blend"))


@dataclass(frozen=True)
class Command:
    """A subcommand: `target` is 'module:function' under podium.stages (or a function here); with
    `config` the function's first argument is the config made from --config and the overrides,
    and every option is passed by its name."""

    target: str | Callable
    help: str
    options: tuple[Option, ...] = ()
    config: bool = True


def _print_n_splits(cfg: Config) -> None:
    say(str(cfg.folds.n_splits))


COMMANDS: dict[str, Command] = {
    "check": Command("check:run_check", "validate the config and the competition data, train nothing"),
    "folds": Command("folds:run_folds", "write runs/<exp>/folds.csv"),
    "train": Command("train:run_train", "train one fold under accelerate launch", (
        FOLD, NPROC,
        Option(("--fresh",), dict(action="store_true", help="train even if the fold is up to date")),
        Option(("--accelerate-config",), dict(default=None, help="an accelerate config file (e.g. several nodes)")),
        Option(("--port",), dict(type=int, default=None, help="rendezvous port (default 29500 + fold)")),
        Option(("--pin-gpu",), dict(action="store_true",
                                    help="one GPU for this fold: GPU fold mod #GPUs (make -j cv)")),
    )),
    "oof": Command("oof:run_oof", "join the out-of-fold predictions, write oof.csv and cv.json"),
    "submit": Command("submit:run_submit", "write submissions/<exp>.csv", (
        Option(("--folds",), dict(default="", help="some folds only, e.g. 0,2: writes "
                                                   "submissions/<exp>.folds-0-2.csv")),)),
    "schedule": Command("schedule:run_schedule", "write runs/<exp>/schedule.csv and schedule.png from the config "
                        "alone", (Option(("--nproc",), dict(type=int, default=1,
                                                           help="training processes the schedule assumes")),)),
    "ablate": Command("ablate:run_ablation", "train no tricks / all five / all minus each one on the same folds",
                      (FOLDS, NPROC)),
    "tune": Command("tune:run_tune", "an Optuna search over tune.space (runs/<exp>/tune.db, tune.csv, best.yaml)", (
        Option(("--trials",), dict(type=int, default=None, help="finished trials to reach (default tune.trials)")),
        Option(("--worker",), dict(type=int, default=0, help="this worker's number (make -j N tune)")),
        Option(("--step",), dict(default="search", choices=["study", "search", "summary"])),
        NPROC, Option(("--pin-gpu",), dict(action="store_true", help="one GPU per worker: worker mod #GPUs")),
    )),
    "lr-find": Command("lr_find:run_lr_find", "the lr range test on fold 0: runs/<exp>/lr_find.png and a "
                       "suggested train.lr", (
        Option(("--updates",), dict(type=int, default=200, help="updates the lr ramps over (default 200)")),
        Option(("--start",), dict(type=float, default=1e-7, help="the first lr (default 1e-7)")),
        Option(("--end",), dict(type=float, default=10.0, help="the last lr (default 10)")),
    )),
    "kaggle-dataset": Command("kaggle:run_kaggle_dataset", "upload runs/<exp>/bundle/ as a private Kaggle dataset "
                              "(or a new version of it)", (NAME,)),
    "kaggle-submit": Command("kaggle:run_kaggle_submit", "submit submissions/<exp>.csv to kaggle.competition", (
        NAME, Option(("--message",), dict(default="", help="your note; the CV score and git commit are added")),
    )),
    "report": Command("report:run_report", "write runs/<exp>/report.html", (NAME,)),
    "audit": Command("audit:run_audit", "write runs/<exp>/audit.html, audit.csv, audit_groups.csv: duplicate "
                     "images and label suspects"),
    "bundle": Command("bundle:run_bundle", "write runs/<exp>/bundle/ for an offline Kaggle kernel", (NAME,)),
    "blend": Command("blend:blend_stage", "join finished runs into runs/<name>/ and submissions/<name>.csv", (
        Option(("--exps",), dict(nargs="+", required=True, help="the runs to blend (experiments or blends)")),
        Option(("--name",), dict(required=True, help="the blend's name")),
        Option(("--method",), dict(default="weights", choices=["weights", "mean", "rank"])),
    )),
    "leaderboard": Command("leaderboard:print_leaderboard", "every runs/*/cv.json, best first",
                           (Option(("--runs-dir",), dict(default="runs")),), config=False),
    "n-splits": Command(_print_n_splits, "print folds.n_splits (for the Makefile)"),
    "demo-data": Command("demo:run_demo_data", "write the demo competition to data/demo/", config=False),
    "train-worker": Command("train:train_worker", "train the fold that a fold<k>/worker.json describes "
                            "(podium train writes it; rerun it by hand to debug a fold)",
                            (Option(("job_file",), dict(help="runs/<exp>/fold<k>/worker.json")),), config=False),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium", description="folds -> train -> oof -> submit")
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        s = sub.add_parser(name, help=command.help)
        if command.config:
            s.add_argument("--config", default="configs/default.yaml")
            s.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.epochs=3")
        for option in command.options:
            s.add_argument(*option.flags, **option.kwargs)
    return p


def parse_folds(text: str | None, n_splits: int, key: str = "FOLDS") -> list[int] | None:
    """'0,2' -> [0, 2]; None or '' -> None (all folds). Refused unless each is a fold of n_splits."""
    if not text or not text.strip():
        return None
    try:
        folds = sorted({int(f) for f in text.split(",") if f.strip()})
    except ValueError:
        raise PodiumError(f"{key}={text}: expected fold numbers such as 0,2") from None
    bad = [k for k in folds if not 0 <= k < n_splits]
    if bad:
        raise PodiumError(f"{key}={text}: fold(s) {bad} do not exist (folds.n_splits={n_splits})")
    return folds


def _stage(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module, function = target.split(":")
    return getattr(importlib.import_module(f"podium.stages.{module}"), function)


def _run(args: argparse.Namespace) -> int | None:
    command = COMMANDS[args.command]
    options = {key: value for key, value in vars(args).items() if key not in ("command", "config", "overrides")}
    if not command.config:
        return _stage(command.target)(**options)
    cfg = load_config(args.config, args.overrides)
    if "folds" in options:  # FOLDS=0,2 of make submit and make ablate, checked against the config
        options["folds"] = parse_folds(options["folds"], cfg.folds.n_splits)
    return _stage(command.target)(cfg, **options)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _run(args)
    except PodiumError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
