"""`make lr-find` on a small competition: the curve it writes is the range test's (a geometric
ramp, the debiased moving average, the centered average), and the suggestion it prints is
recomputed from that file."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from podium.runs import layout
from podium.train.lr_range import SMOOTHING

from conftest import ok, podium, tiny_config, write_config


@pytest.mark.slow
def test_lr_find_writes_the_curve_and_suggests_a_tenth_of_its_lowest_point(tmp_path, competition):
    cfg = tiny_config(competition, tmp_path / "runs")
    path = write_config(cfg, tmp_path / "t.yaml")
    out = ok(podium("lr-find", "--config", str(path), "--updates", "60", "--start", "1e-6", "--end", "100"))
    table = pd.read_csv(tmp_path / "runs" / "t" / layout.LR_FIND_CSV)
    assert 10 <= len(table) <= 60 and (tmp_path / "runs" / "t" / layout.LR_FIND_PNG).is_file()
    assert table["lr"].iloc[0] == pytest.approx(1e-6)
    assert np.allclose(np.diff(np.log(table["lr"])), np.log(100 / 1e-6) / 59)
    average, smoothed = 0.0, []
    for i, loss in enumerate(table["loss"]):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed.append(average / (1 - SMOOTHING ** (i + 1)))
    assert np.allclose(smoothed, table["moving_average"])
    losses = table["loss"].to_numpy()
    centered = [losses[max(0, i - 2):i + 3].mean() for i in range(len(losses))]  # 5 updates: the least window
    assert np.allclose(centered, table["centered_loss"])
    suggested = float(re.search(r"suggested train\.lr=(\S+)", out).group(1))
    assert suggested == pytest.approx(table["lr"].iloc[int(np.argmin(centered))] / 10, rel=0.05)  # printed to 2 digits


def test_too_few_updates_are_refused_before_training(tmp_path, competition):
    path = write_config(tiny_config(competition, tmp_path / "runs"), tmp_path / "t.yaml")
    out = podium("lr-find", "--config", str(path), "--updates", "3")
    assert out.returncode == 2 and "UPDATES=3" in out.stderr
    assert not (tmp_path / "runs" / "t").exists()
