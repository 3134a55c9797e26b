"""The freshness checks every stage shares (and nothing that needs torch: `make oof`, `make submit`
and `make leaderboard` start without it): the competition's data checked, the folds current,
finished runs (experiments and blends) and the teachers a student learns from.

A stage that reads another stage's files asks here first, so a fold trained under another
config, a killed retrain or a blend whose member changed is refused in one line, never read as
current. A finished experiment's OOF is joined and scored here when that was not done yet
(evaluate.cv), which is why the check of a blend (whose members may be blends) and of a teacher
live in this one module.
"""

from __future__ import annotations

from pathlib import Path

from podium import artifacts
from podium.config import Config
from podium.data.competition import Competition, check_images, load_competition
from podium.data.corrections import read_corrections
from podium.data.demo import ensure_demo_data
from podium.errors import PodiumError
from podium.evaluate.cv import update_oof
from podium.runs import layout, records
from podium.runs.finished import Finished, is_blend, read_finished, same_competition, saved_config


def load_checked(cfg: Config) -> tuple[Competition, str]:
    """The competition's tables, checked, and a hash of the three CSV files."""
    ensure_demo_data(cfg)
    comp = load_competition(cfg)
    root = cfg.data_dir
    csvs = [artifacts.file_hash(root / name) for name in
            (cfg.data.train_csv, cfg.data.test_csv, cfg.data.sample_submission) if name]
    csvs += [artifacts.file_hash(Path(e.dir or root) / e.csv) for e in cfg.data.extra]
    # What the user corrected: part of the data (a changed drop or relabel file retrains the folds)
    corrections = read_corrections(cfg, comp.train, comp.classes)
    groups = [Path(cfg.folds.groups_csv)] if cfg.folds.groups_csv else []
    csvs += [artifacts.file_hash(path) for path in [*corrections.files(cfg), *groups]]
    return comp, artifacts.text_hash(*csvs)


def checked_images(cfg: Config, comp: Competition) -> tuple[str, dict]:
    """(A content hash of every image, and per image path its [size, mtime, content hash,
    decodable]), each image checked to decode; unchanged files are known by their size and mtime
    (runs/.cache/image-check.json), so this is cheap after the first run."""
    cache_file = layout.image_check_file(cfg)
    images_hash, checked = check_images(comp, cache_file)
    artifacts.write_json(cache_file, checked)
    return images_hash, checked


def data_fingerprint(cfg: Config, comp: Competition, csv_hash: str) -> str:
    """A content hash of the competition's CSV files and every image (checked_images)."""
    return artifacts.text_hash(csv_hash, checked_images(cfg, comp)[0])


def load_current(cfg: Config, folds: list[int]) -> Competition:
    """The competition, after checking that each of `folds` is trained and current for this
    config, folds.csv, data and teachers (a one-line refusal naming the fold and what differs)."""
    comp, csv_hash = load_checked(cfg)
    if not layout.folds_csv(cfg).is_file():
        raise PodiumError(f"{layout.folds_csv(cfg)} not found: run make folds and make cv first")
    layout.check_folds(cfg, folds, data_fingerprint(cfg, comp, csv_hash), teacher_digest(cfg, comp))
    return comp


def current_oof(cfg: Config) -> tuple[dict, bool]:
    """(cv.json, whether it was up to date already) of an experiment whose every fold is current;
    its OOF joined and scored now if that was not done yet."""
    return update_oof(cfg, load_current(cfg, list(range(cfg.folds.n_splits))))


# ---------------------------------------------------------------------------------------------
# Finished runs: an experiment whose folds are all current, or a blend of such. What a blend joins
# and what a student learns from (distillation, pseudo-labels).


def finished_run(runs_dir: str | Path, name: str) -> Finished:
    """Experiment or blend `name` under `runs_dir`, refused unless every fold (or member) is
    trained and current; an experiment's OOF scored (make oof) if that was not done yet."""
    if is_blend(runs_dir, name):
        check_blend(runs_dir, name)
    else:
        current_oof(saved_config(runs_dir, name))  # refuses folds that are not current
    return read_finished(runs_dir, name)


def teacher_digest(cfg: Config, comp: Competition) -> str:
    """A digest of the teachers' predictions a student trains on ("" without teachers); checks
    each teacher is finished and of this competition."""
    parts = []
    for key, name in (("distill.teacher", cfg.distill.teacher), ("pseudo.teacher", cfg.pseudo.teacher)):
        if name == cfg.experiment:
            raise PodiumError(f"config key '{key}': {name} is this experiment; a teacher is another run")
        if name:
            teacher = finished_run(cfg.runs_dir, name)
            same_competition(teacher.comp, comp, f"config key '{key}': teacher {name} and this experiment")
            parts.append(f"{key}={teacher.digest}")
    return artifacts.text_hash(*parts) if parts else ""


def blend_inputs(method: str, members: list[Finished]) -> dict[str, str]:
    """What a blend depends on: its method and each member's predictions (their digests)."""
    return {"method": method, **{f"member:{m.name}": m.digest for m in members}}


def check_blend(runs_dir: str | Path, name: str) -> None:
    """Refuse (one line) unless blend `name` is current: every member current (checked the way
    an experiment's consumers check it) and unchanged since it was blended."""
    run = Path(runs_dir) / name
    spec = artifacts.read_json(run / layout.BLEND_JSON)
    inputs = blend_inputs(spec["method"], [finished_run(runs_dir, m) for m in spec["members"]])
    if records.is_up_to_date(run, layout.BLEND_STAGE, inputs):
        return
    try:
        saved = artifacts.read_json(records.record_path(run, layout.BLEND_STAGE)).get("inputs", {})
    except (OSError, ValueError):
        saved = {}
    changed = [k.removeprefix("member:") for k in inputs if k.startswith("member:") and saved.get(k) != inputs[k]]
    what = f"member(s) {', '.join(changed)} changed since" if changed else "its files changed since"
    raise PodiumError(f"blend {name} is stale: {what} it was made; make it again "
                      f"(make blend EXPS=\"{' '.join(spec['members'])}\" NAME={name})")
