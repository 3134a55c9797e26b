"""What `auto` precision and memory format become on a CPU: measured once, kept, and never let
into the scores (the OOF and test predictions are made in float32)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from podium import artifacts
from podium.runs import layout
from podium.train import precision
from podium.train.precision import choose, resolve

from conftest import tiny_config, write_competition


def _auto(tmp_path):
    return tiny_config(tmp_path, tmp_path / "runs", model={"name": "test_resnet"},
                       train={"batch_size": 8, "precision": "auto", "channels_last": "auto"})


def test_a_faster_setting_must_beat_float32_by_the_margin():
    plain, fast = ("no", False), ("bf16", True)
    assert choose({plain: 100.0, fast: 109.0, ("no", True): 104.0}) == plain  # a tie is noise
    assert choose({plain: 100.0, fast: 111.0, ("no", True): 104.0}) == fast
    assert choose({plain: 100.0, ("no", True): 130.0, fast: 120.0}) == ("no", True)
    assert choose({plain: 100.0, fast: 40.0}) == plain


def test_auto_times_each_setting_once_per_machine_then_reuses_the_answer(tmp_path, monkeypatch):
    cfg = _auto(tmp_path)
    monkeypatch.setattr(precision, "BUSY_SHARE", float("inf"))  # the load on the test machine is not the point
    timed = []
    real = precision.measure

    def spy(cfg, num_outputs, settings, batch):
        timed.append(settings)
        return real(cfg, num_outputs, settings, batch)
    monkeypatch.setattr(precision, "measure", spy)
    first = resolve(cfg, 3)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert sorted(timed[0]) == sorted([(p, f) for p in (["no", "bf16"] if native else ["no"]) for f in (False, True)])
    assert (first.precision, first.channels_last) in timed[0] and first.why.startswith("measured on this CPU")
    saved = artifacts.read_json(layout.speed_cache(cfg))
    assert [(v["precision"], v["channels_last"]) for v in saved.values()] == [(first.precision, first.channels_last)]

    again = resolve(cfg, 3)  # another fold, or a resumed one: the same choice, nothing timed
    assert len(timed) == 1 and (again.precision, again.channels_last) == (first.precision, first.channels_last)
    assert first.why.endswith(f"; kept in {layout.speed_cache(cfg)}")
    assert again.why.startswith(f"from {layout.speed_cache(cfg)}, measured on this CPU ")
    assert again.why.endswith(first.why.removeprefix("measured on this CPU: ").split(";")[0])  # the same rates
    bigger = cfg.model_copy(update={"train": cfg.train.model_copy(update={"image_size": 24})})
    resolve(bigger, 3)  # another size is other work: timed again
    assert len(timed) == 2
    # a config that fixes one half never gets a kept choice made among settings it rules out
    for fixed in ("on", "off"):
        half = cfg.model_copy(update={"train": cfg.train.model_copy(update={"channels_last": fixed})})
        chosen = resolve(half, 3)
        assert chosen.channels_last is (fixed == "on"), chosen


@pytest.fixture
def busy_cores():
    """Other processes spinning, one per core this process may use, each running before the test goes on."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(len(os.sched_getaffinity(0)))]
    deadline = time.time() + 20
    while time.time() < deadline and min(_cpu_seconds(s.pid) for s in spinners) < 0.2:
        time.sleep(0.05)
    yield spinners
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the CPU's load is read from Linux's /proc/stat")
def test_a_timing_taken_while_other_processes_spin_is_used_but_not_kept(tmp_path, busy_cores):
    cfg = _auto(tmp_path)
    # the load measure itself, against a known load: every core spinning while this process sleeps
    _, share = precision.timed_alone(lambda: time.sleep(1.0))
    assert share == pytest.approx(1.0, abs=0.15)
    busy = resolve(cfg, 3)
    assert "while other processes used" in busy.why and "not kept" in busy.why
    assert not layout.speed_cache(cfg).exists()


def test_a_kept_timing_older_than_the_installed_packages_is_timed_again(tmp_path, monkeypatch):
    cfg = _auto(tmp_path)
    monkeypatch.setattr(precision, "BUSY_SHARE", float("inf"))
    first = resolve(cfg, 3)
    assert first.why.startswith("measured on this CPU")
    installed = precision.environment_time()
    monkeypatch.setattr(precision, "environment_time", lambda: time.time() + 60)  # packages installed after
    again = resolve(cfg, 3)
    assert again.why.startswith("measured on this CPU again (the installed packages changed")
    assert again.why.endswith("kept in " + str(layout.speed_cache(cfg)))
    monkeypatch.setattr(precision, "environment_time", lambda: installed)
    assert resolve(cfg, 3).why.startswith(f"from {layout.speed_cache(cfg)}")  # the new timing is kept


def test_settings_the_config_fixes_are_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda *a: pytest.fail("measured a fixed setting"))
    cfg = tiny_config(tmp_path, tmp_path / "runs", train={"precision": "no", "channels_last": "on"})
    assert (resolve(cfg, 3).precision, resolve(cfg, 3).channels_last) == ("no", True)
    assert not layout.speed_cache(cfg).exists()
    # untimed (a worker.json written by hand): a fixed half of the setting is still honoured
    half = tiny_config(tmp_path, tmp_path / "runs", train={"precision": "auto", "channels_last": "on"})
    assert (resolve(half, 3, measure_cpu=False).precision, resolve(half, 3, measure_cpu=False).channels_last) \
        == ("no", True)


@pytest.mark.slow  # trains a fold in this process
@pytest.mark.parametrize("ema", [False, True])
def test_a_fold_trained_in_bf16_channels_last_predicts_in_float32(tmp_path, fresh_accelerate_state, ema):
    """The OOF score and the submission do not depend on the training precision: a float32,
    default-layout forward pass of the fold's saved weights gives its test.csv exactly (the EMA's
    copy of the model predicts too, when it is on)."""
    from podium.data.competition import load_competition
    from podium.data.datasets import ImageDataset, Normalize
    from podium.predict.forward import forward_views
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loop import train_fold
    from podium.train.models import create_model

    data, _ = write_competition(tmp_path / "comp", n_train=40, n_test=10)
    cfg = tiny_config(data, tmp_path / "runs", train={"precision": "bf16", "channels_last": "on", "ema": ema})
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    chosen = resolve(cfg, comp.num_outputs)
    assert (chosen.precision, chosen.channels_last) == ("bf16", True)
    train_fold(cfg, 0, layout.train_inputs(cfg, 0, data_hash), speed=chosen)
    saved = yaml.safe_load((layout.fold_dir(cfg, 0) / layout.CONFIG_YAML).read_text())["provenance"]
    assert (saved["mixed_precision"], saved["channels_last"]) == ("bf16", True)

    comp = load_competition(cfg)
    model = create_model(cfg.model, comp.num_outputs).eval()
    model.load_state_dict(load_file(str(layout.fold_dir(cfg, 0) / layout.WEIGHTS)))
    ds = ImageDataset(comp.test["path"], None, cfg.augment.valid, cfg.train.image_size, cfg.seed, "augment.valid",
                      augment_seed=False)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        normalized = Normalize(cfg.augment.mean, cfg.augment.std, "cpu")(images)
        probs = forward_views(model, normalized, comp.task)[1][0]
    written = layout.read_fold(cfg, 0, layout.TEST_CSV, comp.prob_columns)
    expected = layout.Predictions(comp.test[cfg.data.id_column].to_numpy(), probs.numpy()).in_order(written.ids)
    np.testing.assert_allclose(written.probs, expected, rtol=0, atol=1e-5)
