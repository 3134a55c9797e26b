"""The lr range test on least squares with a known Hessian, where the answer is known: plain SGD
is stable below lr 2 / (the largest eigenvalue) and diverges above it. The ramp must stop past
that bound (and not far past), the loss curve must be lowest at it, and the suggestion must train
stably, whatever the curvature and the ramp's length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from podium.train.lr_range import SMOOTHING, ramp, range_test

NOISE = 0.3  # the targets' noise: the loss floor is NOISE**2 / 2


class LeastSquares:
    """Minibatches of x ~ N(0, diag(eigenvalues)), y = x . w* + noise: the expected loss is a
    quadratic whose Hessian is diag(eigenvalues)."""

    def __init__(self, largest: float, seed: int, dims: int = 8, batch: int = 256):
        self.g = torch.Generator().manual_seed(seed)
        self.eigenvalues = torch.logspace(0, math.log10(largest), dims, dtype=torch.float64)
        self.w_star = torch.randn(dims, generator=self.g, dtype=torch.float64)
        self.w = torch.nn.Parameter(torch.zeros(dims, dtype=torch.float64))
        self.opt = torch.optim.SGD([self.w], lr=1.0)  # no momentum: the 2 / eigenvalue bound is exact
        self.batch = batch

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def update(self) -> float:
        x = torch.randn(self.batch, len(self.w), generator=self.g, dtype=torch.float64) * self.eigenvalues.sqrt()
        y = x @ self.w_star + NOISE * torch.randn(self.batch, generator=self.g, dtype=torch.float64)
        loss = 0.5 * ((x @ self.w - y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def train_at(self, lr: float, updates: int | None = None) -> float:
        """The mean loss of the last 50 updates at a constant lr; by default enough updates for the
        flattest direction (eigenvalue 1) to shrink by e^8."""
        updates = updates or int(8 / lr) + 50
        self.set_lr(lr)
        losses = [self.update() for _ in range(updates)]
        return float(np.mean(losses[-50:]))


@pytest.mark.parametrize(("largest", "updates"), [(10.0, 100), (50.0, 200), (200.0, 400)])
def test_the_ramp_stops_past_the_stability_bound_and_suggests_a_stable_lr(largest, updates):
    problem = LeastSquares(largest, seed=int(largest) + updates)
    result = range_test(problem.set_lr, problem.update, start=1e-5, end=10.0, updates=updates)
    bound = 2.0 / largest
    assert result.diverged
    assert bound <= result.lrs[-1] <= 5 * bound  # a few updates past it: the smoothing's lag
    # the centered loss is lowest at the bound, within a factor of 2 or so: a few updates past it
    # (the error along the steepest direction grows slowly at first), or before it (SGD's noise
    # grows as the lr nears it)
    assert bound / 2.5 <= result.lowest <= 2 * bound
    assert result.suggestion == pytest.approx(result.lowest / 10)
    # trained from scratch at the suggestion, the loss reaches the noise floor; past the bound it
    # blows up
    floor = NOISE**2 / 2
    assert LeastSquares(largest, seed=1).train_at(result.suggestion) < 1.2 * floor
    assert LeastSquares(largest, seed=1).train_at(1.5 * bound, updates=100) > 1e3


def test_smoothing_is_the_debiased_moving_average_and_the_ramp_is_geometric():
    lrs = ramp(1e-4, 1.0, 5)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    losses = iter([3.0, 2.0, 2.5, 1.0, 0.5])
    seen = []
    result = range_test(seen.append, lambda: next(losses), 1e-4, 1.0, 5)
    assert seen == pytest.approx(lrs) and not result.diverged
    expected, average = [], 0.0
    for i, loss in enumerate([3.0, 2.0, 2.5, 1.0, 0.5]):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        expected.append(average / (1 - SMOOTHING ** (i + 1)))
    assert result.smoothed == pytest.approx(expected)
    # the centered average over 5 updates (its least window), shrunk at the ends
    losses = [3.0, 2.0, 2.5, 1.0, 0.5]
    centered = [np.mean(losses[max(0, i - 2):i + 3]) for i in range(5)]
    assert result.centered == pytest.approx(centered)
    assert result.lowest == pytest.approx(lrs[int(np.argmin(centered))])
    assert result.suggestion == pytest.approx(result.lowest / 10)
    # a loss that is not finite stops the ramp at once and is not recorded
    losses = iter([1.0, math.nan, 0.1])
    stopped = range_test(lambda lr: None, lambda: next(losses), 1e-4, 1.0, 3)
    assert stopped.diverged and stopped.losses == [1.0]
