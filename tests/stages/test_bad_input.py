"""Each bad input: a clear error naming the file, column or id, a non-zero exit, nothing written."""

import shutil

import pandas as pd
import pytest

from podium.cli import main

from conftest import podium, tiny_config, write_config


@pytest.fixture
def setup(tmp_path, competition):
    cfg = tiny_config(competition, tmp_path / "runs")
    path = write_config(cfg, tmp_path / "t.yaml")
    return competition, path, tmp_path / "runs"


def _fails(capsys, config, runs, *extra, stage="train"):
    args = [stage, "--config", str(config)] + (["--fold", "0"] if stage == "train" else []) + list(extra)
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ")
    # nothing half-written: no folds, no fold folder, no run folder at all
    assert not runs.exists() or not any(runs.rglob("*")), list(runs.rglob("*"))
    return err


def _edit(path, fn):
    df = pd.read_csv(path, dtype=str)
    fn(df).to_csv(path, index=False)


def test_good_data_passes_the_check(setup, capsys):
    comp, config, runs = setup
    assert main(["check", "--config", str(config)]) == 0
    assert "90 train rows" in capsys.readouterr().out


def test_missing_csv(setup, capsys):
    comp, config, runs = setup
    (comp / "test.csv").unlink()
    err = _fails(capsys, config, runs)
    assert "test.csv" in err and "not found" in err


def test_missing_column(setup, capsys):
    comp, config, runs = setup
    err = _fails(capsys, config, runs, "data.target=species")
    assert "train.csv" in err and "'species'" in err


def test_duplicate_ids(setup, capsys):
    comp, config, runs = setup
    _edit(comp / "train.csv", lambda df: pd.concat([df, df.iloc[[3]]]))
    err = _fails(capsys, config, runs)
    assert "duplicate" in err and "train0003" in err


@pytest.mark.parametrize("value", ["", "nan"])
def test_empty_or_nan_target(setup, capsys, value):
    comp, config, runs = setup
    def blank(df):
        df.loc[5, "label"] = value if value else None
        return df
    _edit(comp / "train.csv", blank)
    err = _fails(capsys, config, runs)
    assert "'label'" in err and "train0005" in err


def test_test_and_sample_ids_differ(setup, capsys):
    comp, config, runs = setup
    _edit(comp / "sample_submission.csv", lambda df: df.assign(id=df["id"].where(df.index != 2, "ghost")))
    err = _fails(capsys, config, runs)
    assert "sample_submission.csv" in err and "'ghost'" in err and "'test0002'" in err


def test_missing_and_undecodable_images_are_all_listed(setup, capsys):
    comp, config, runs = setup
    for i in (1, 7, 12):
        (comp / "train" / f"train{i:04d}.png").unlink()
    for i in (4, 9):
        (comp / "test" / f"test{i:04d}.png").write_bytes(b"\x89PNG truncated")
    err = _fails(capsys, config, runs)
    for name in ("train0001.png", "train0007.png", "train0012.png", "test0004.png", "test0009.png"):
        assert name in err
    assert "3 image file(s) missing" in err and "2 image file(s)" in err and "cannot be decoded" in err


def test_path_leaving_the_competition_folder(setup, capsys, tmp_path):
    comp, config, runs = setup
    shutil.copy(comp / "train" / "train0000.png", tmp_path / "outside.png")
    _edit(comp / "train.csv", lambda df: df.assign(id=df["id"].where(df.index != 0, "../../outside")))
    err = _fails(capsys, config, runs)
    assert "leave the competition folder" in err and "../../outside" in err


def test_more_folds_than_the_smallest_class_allows(setup, capsys):
    comp, config, runs = setup
    _edit(comp / "train.csv", lambda df: df.assign(label=df["label"].where(df.index > 1, "rare")))
    err = _fails(capsys, config, runs)
    assert "smallest class" in err and "'rare'" in err


def test_unknown_config_key(setup, capsys):
    comp, config, runs = setup
    err = _fails(capsys, config, runs, "train.epocs=2")
    assert "train.epocs" in err and "train.epochs" in err


def test_unknown_model_and_transform(setup, capsys):
    comp, config, runs = setup
    assert "model.name" in _fails(capsys, config, runs, "model.name=resnet_does_not_exist")
    assert "NoSuchFlip" in _fails(capsys, config, runs, "augment.train=[{name: NoSuchFlip}]")
    assert "augment.valid" in _fails(capsys, config, runs, "augment.valid=[{name: HorizontalFlip}]")
    # podium normalizes on the device: a second normalization in the pipeline would be silent damage
    err = _fails(capsys, config, runs, "augment.train=[{name: Resize}, {name: Normalize}]")
    assert "augment.train[1]" in err and "Normalize" in err and "augment.mean" in err


def test_cli_exit_code_and_single_line(setup):
    comp, config, runs = setup
    out = podium("train", "--config", str(config), "--fold", "0", "folds.n_splits=1")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "folds.n_splits" in out.stderr


def test_batch_larger_than_the_training_fold(setup, capsys):
    comp, config, runs = setup
    err = _fails(capsys, config, runs, "train.batch_size=500")
    assert "train.batch_size=500" in err and "training rows" in err
