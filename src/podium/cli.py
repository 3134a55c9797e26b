"""`podium <stage>`: parse arguments, make the config once, call the stage."""

from __future__ import annotations

import argparse
import sys

from .errors import PodiumError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium", description="folds -> train -> oof -> submit")
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("--config", default="configs/default.yaml")
        s.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.epochs=3")
        return s

    stage("check", help="validate the config and the competition data, train nothing")
    stage("folds", help="write runs/<exp>/folds.csv")
    t = stage("train", help="train one fold under accelerate launch")
    t.add_argument("--fold", type=int, required=True)
    t.add_argument("--nproc", type=int, default=None, help="processes (default: one per GPU, or 1)")
    t.add_argument("--fresh", action="store_true", help="train even if the fold is up to date")
    t.add_argument("--accelerate-config", default=None, help="an accelerate config file (e.g. several nodes)")
    t.add_argument("--port", type=int, default=None, help="rendezvous port (default 29500 + fold)")
    t.add_argument("--pin-gpu", action="store_true", help="one GPU for this fold: GPU fold mod #GPUs (make -j cv)")
    stage("oof", help="join the out-of-fold predictions, write oof.csv and cv.json")
    sm = stage("submit", help="write submissions/<exp>.csv")
    sm.add_argument("--folds", default="", help="some folds only, e.g. 0,2: writes submissions/<exp>.folds-0-2.csv")
    sc = stage("schedule", help="write runs/<exp>/schedule.csv and schedule.png from the config alone")
    sc.add_argument("--nproc", type=int, default=1, help="training processes the schedule assumes")
    ab = stage("ablate", help="train no tricks / all five / all minus each one on the same folds")
    ab.add_argument("--folds", default="", help="comma-separated folds, e.g. 0,1 (default: all)")
    ab.add_argument("--nproc", type=int, default=None)
    rp = stage("report", help="write runs/<exp>/report.html")
    rp.add_argument("--name", default="", help="another run under runs_dir, e.g. a blend")
    bd = stage("bundle", help="write runs/<exp>/bundle/ for an offline Kaggle kernel")
    bd.add_argument("--name", default="", help="another run under runs_dir, e.g. a blend")
    bl = stage("blend", help="join finished runs into runs/<name>/ and submissions/<name>.csv")
    bl.add_argument("--exps", nargs="+", required=True, help="the runs to blend (experiments or blends)")
    bl.add_argument("--name", required=True, help="the blend's name")
    bl.add_argument("--method", default="weights", choices=["weights", "mean", "rank"])
    lb = sub.add_parser("leaderboard", help="every runs/*/cv.json, best first")
    lb.add_argument("--runs-dir", default="runs")
    stage("n-splits", help="print folds.n_splits (for the Makefile)")
    sub.add_parser("demo-data", help="write the demo competition to data/demo/")
    w = sub.add_parser("train-worker", help="train the fold that a fold<k>/worker.json describes (podium train "
                       "writes it; rerun it by hand to debug a fold)")
    w.add_argument("job", help="runs/<exp>/fold<k>/worker.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args) or 0
    except PodiumError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def _run(args) -> int | None:
    from . import stages

    if args.command == "demo-data":
        from .demo import DEMO_DIR, write_demo

        print(f"demo competition in {write_demo(DEMO_DIR)}/")
        return 0
    if args.command == "leaderboard":
        from pathlib import Path

        from .leaderboard import print_leaderboard

        print_leaderboard(Path(args.runs_dir))
        return 0
    if args.command == "train-worker":
        stages.train_worker(args.job)
        return 0

    from .config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.command == "n-splits":
        print(cfg.folds.n_splits)
    elif args.command == "check":
        from .submission import submission_kind

        comp, _ = stages.preflight(cfg)
        stages.teacher_digest(cfg, comp)  # a teacher that is missing, stale or of another competition
        what = {"multiclass": "classes", "binary": "classes", "multilabel": "labels"}.get(comp.task)
        outputs = f"{len(comp.prob_columns)} {what}" if what else "one value per image"
        print(f"ok: {len(comp.train)} train rows, {len(comp.test)} test rows, {comp.task}: {outputs}; "
              f"the submission holds {submission_kind(comp, cfg)}s in {cfg.data.sample_submission}'s shape")
    elif args.command == "folds":
        stages.run_folds(cfg)
    elif args.command == "train":
        return stages.run_train(cfg, args.fold, args.nproc, args.fresh, args.accelerate_config, args.port,
                                args.pin_gpu)
    elif args.command == "oof":
        stages.run_oof(cfg)
    elif args.command == "submit":
        stages.run_submit(cfg, stages.parse_folds(args.folds, cfg))
    elif args.command == "report":
        from .report import run_report

        run_report(_named(cfg, args.name))
    elif args.command == "bundle":
        from .bundle import run_bundle

        run_bundle(_named(cfg, args.name))
    elif args.command == "blend":
        from .blending import run_blend

        run_blend(cfg.runs_dir, args.exps, args.name, args.method, cfg.submissions_dir)
    elif args.command == "schedule":
        stages.run_schedule(cfg, args.nproc)
    elif args.command == "ablate":
        from .ablation import run_ablation

        try:
            folds = [int(f) for f in args.folds.split(",") if f.strip()]
        except ValueError:
            raise PodiumError(f"FOLDS={args.folds}: expected fold numbers such as 0,1") from None
        run_ablation(cfg, folds, args.nproc)
    return 0


def _named(cfg, name: str):
    """The config run `name` under cfg.runs_dir was made with (a blend's, an experiment's), or cfg."""
    if not name:
        return cfg
    from .finished import saved_config

    return saved_config(cfg.runs_dir, name)


if __name__ == "__main__":
    sys.exit(main())
