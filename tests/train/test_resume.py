"""Nothing lost: a fold killed anywhere resumes to the same result; checkpoints, locks and
writes fail safe."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file

from podium import artifacts
from podium.errors import PodiumError
from podium.train.checkpoint import STATE, FoldLock, find_resumable

from conftest import REPO, ok, podium


def _config(tmp_path, competition, name, **extra):
    tree = {
        "runs_dir": str(tmp_path / name), "data": {"dir": str(competition)}, "folds": {"n_splits": 3},
        "model": {"name": "test_efficientnet", "drop_rate": 0.3},  # dropout: the torch RNG matters
        # float32, fixed: the two runs live in separate runs folders, where `auto` would time the
        # settings twice and could choose differently, and bf16 kernels on a CPU are not always
        # deterministic (a run in bf16 + channels_last differed in the last bits of one depthwise
        # convolution's weights in one try of five).
        # average_top_k: the k best epochs' weights are part of what a checkpoint must restore
        "train": {"epochs": 5, "batch_size": 8, "image_size": 16, "num_workers": 1, "ema": True,
                  "average_top_k": 3, "precision": "no", "channels_last": "off"},
        "mix": {"prob": 1.0, "off_epochs": 1},
    }
    tree.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _outputs(fold_dir):
    history = pd.read_csv(fold_dir / "history.csv").drop(columns=["seconds", "train_seconds"])  # timings
    return ((fold_dir / "oof.csv").read_bytes(), (fold_dir / "test.csv").read_bytes(), history,
            load_file(str(fold_dir / "model.safetensors")))


@pytest.mark.slow
def _wait_until_gone(group: int, timeout: float = 30) -> None:
    """Until no process of process group `group` is left (killed workers are reaped by init)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {group} still alive {timeout} s after SIGKILL")


@pytest.mark.slow  # trains three times in subprocesses
def test_sigkill_mid_fold_then_resume_gives_the_same_result(tmp_path, competition):
    reference = _config(tmp_path, competition, "ref")
    ok(podium("train", "--config", str(reference), "--fold", "0"))
    ref = _outputs(tmp_path / "ref" / "ref" / "fold0")

    config = _config(tmp_path, competition, "killed")
    fold_dir = tmp_path / "killed" / "killed" / "fold0"
    proc = subprocess.Popen([sys.executable, "-m", "podium.cli", "train", "--config", str(config), "--fold", "0"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (fold_dir / "checkpoint" / "epoch-0001").is_dir():  # two epochs done
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its accelerate workers, as a preemption would
    proc.wait()
    _wait_until_gone(proc.pid)  # the workers too: a dying one must not touch the folder after this point
    assert not (fold_dir / "train.done.json").exists()

    # A crash while writing the next checkpoint: a newer folder, truncated. Resume must skip it.
    latest = sorted((fold_dir / "checkpoint").glob("epoch-*"))[-1]
    broken = fold_dir / "checkpoint" / "epoch-0009"
    shutil.copytree(latest, broken)
    with open(broken / "model.safetensors", "r+b") as fh:
        fh.truncate(100)

    out = ok(podium("train", "--config", str(config), "--fold", "0"))
    assert "skipping checkpoint" in out and "truncated" in out
    got = _outputs(fold_dir)
    history = got[2]
    assert history["epoch"].tolist() == list(range(5))  # one row per epoch across the restart
    prov = yaml.safe_load((fold_dir / "config.yaml").read_text())["provenance"]
    assert prov["resumed_from"] and "epoch-000" in prov["resumed_from"]
    # Bit for bit on this CPU: the same predictions, history and weights as the run never killed.
    assert got[0] == ref[0] and got[1] == ref[1]
    pd.testing.assert_frame_equal(history, ref[2])
    assert got[3].keys() == ref[3].keys()
    for key in ref[3]:
        assert (got[3][key] == ref[3][key]).all(), key
    assert not (fold_dir / "checkpoint").exists()  # a finished fold drops its checkpoint
    assert not (fold_dir / ".lock").exists()


def _fake_checkpoint(root, epoch, inputs, corrupt=False):
    folder = root / f"epoch-{epoch:04d}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 64)
    (folder / STATE).write_text(json.dumps({"epoch": epoch, "inputs": inputs}))
    from podium.train.checkpoint import MANIFEST, _manifest
    (folder / MANIFEST).write_text(json.dumps(_manifest(folder)))
    if corrupt:
        (folder / "model.safetensors").write_bytes(b"y" * 64)
    return folder


def test_corrupt_checkpoints_fall_back_or_fail_clearly(tmp_path):
    inputs = {"config": "c1", "folds": "f1", "data": "d1", "fold": "0"}
    root = tmp_path / "checkpoint"
    assert find_resumable(root, inputs) == (None, [])
    good = _fake_checkpoint(root, 1, inputs)
    _fake_checkpoint(root, 2, inputs, corrupt=True)
    (root / ".tmp-epoch-0003").mkdir()  # a checkpoint interrupted while being written
    found, notes = find_resumable(root, inputs)
    assert found == good and "epoch-0002" in notes[0] and "corrupt" in notes[0]
    shutil.rmtree(good)
    with pytest.raises(PodiumError, match="no usable checkpoint.*FRESH=1"):
        find_resumable(root, inputs)


def test_resume_refuses_a_changed_config_or_folds(tmp_path):
    root = tmp_path / "checkpoint"
    _fake_checkpoint(root, 3, {"config": "c1", "folds": "f1", "data": "d1", "fold": "0"})
    with pytest.raises(PodiumError, match="another config.*FRESH=1"):
        find_resumable(root, {"config": "c2", "folds": "f1", "data": "d1", "fold": "0"})
    with pytest.raises(PodiumError, match="folds.csv"):
        find_resumable(root, {"config": "c1", "folds": "f2", "data": "d1", "fold": "0"})


def test_lock_live_and_stale(tmp_path):
    first = FoldLock(tmp_path)
    first.acquire()
    with pytest.raises(PodiumError, match="being trained by process"):
        FoldLock(tmp_path).acquire()
    first.release()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "then"}))
    with FoldLock(tmp_path) as lock:  # stale: its process is gone, so it is taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_second_trainer_of_a_fold_is_refused(tmp_path, competition):
    config = _config(tmp_path, competition, "locked")
    fold_dir = tmp_path / "locked" / "locked" / "fold0"
    fold_dir.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (fold_dir / ".lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "since": "now"}))
        out = podium("train", "--config", str(config), "--fold", "0")
        assert out.returncode == 2 and f"being trained by process {holder.pid}" in out.stderr
    finally:
        holder.kill()


def test_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    target = tmp_path / "history.csv"
    artifacts.write_text(target, "epoch\n0\n")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.os, "fsync", full_disk)
    with pytest.raises(PodiumError, match="history.csv.*No space left"):
        artifacts.write_csv(target, pd.DataFrame({"epoch": [0, 1]}))
    assert target.read_text() == "epoch\n0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(PodiumError, match="cannot write"):
        artifacts.write_text(blocker / "exp" / "folds.csv", "id,fold\n")
