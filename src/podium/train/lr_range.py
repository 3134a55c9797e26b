"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find): train
with an lr that grows exponentially from `start` to `end` over a few hundred updates, smooth the
loss, and stop once it diverges. The loss falls slowly while the lr is too small to move the
weights, fastest in the useful range, and blows up past the largest stable lr.

Two smoothings, for two jobs. The stop reads an exponential moving average, which needs only the
losses so far; but it lags behind the growing lr by tens of updates (about two decades of lr on
a 200-update ramp), so its lowest point is far past the loss's. The suggestion reads a centered
average of the recorded losses instead, which does not lag: the lr where it is lowest, divided
by 10. The lowest point lies at the largest stable lr (for gradient descent on a quadratic, 2 /
the largest curvature), so a tenth of it trains stably with room for a schedule's peak, yet
within an order of magnitude of the fastest lr that does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SMOOTHING = 0.98  # the loss's exponential moving average, debiased (as fastai and Lightning)
DIVERGED = 4.0  # stop once that moving average exceeds this many times its lowest value
CENTERED_SHARE = 0.05  # the window of the centered average the suggestion reads, as a share of the updates
SUGGEST_BELOW_MINIMUM = 10.0


@dataclass
class RangeTest:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    diverged: bool = False

    @property
    def centered(self) -> list[float]:
        """Each update's loss averaged with its neighbours on both sides (CENTERED_SHARE of the
        updates, at least 5): smooth, and unlike the moving average, not lagging behind the lr."""
        half = max(2, int(CENTERED_SHARE * len(self.losses)) // 2)
        out = []
        for i in range(len(self.losses)):
            window = self.losses[max(0, i - half):i + half + 1]
            out.append(sum(window) / len(window))
        return out

    @property
    def lowest(self) -> float:
        """The lr at the centered loss's lowest point."""
        curve = self.centered
        return self.lrs[min(range(len(curve)), key=curve.__getitem__)]

    @property
    def suggestion(self) -> float:
        return self.lowest / SUGGEST_BELOW_MINIMUM


def ramp(start: float, end: float, updates: int) -> list[float]:
    """`updates` learning rates from start to end, each the previous times the same factor."""
    if not 0 < start < end or updates < 2:
        raise ValueError(f"need 0 < start < end and at least 2 updates (got {start}, {end}, {updates})")
    factor = (end / start) ** (1 / (updates - 1))
    return [start * factor**i for i in range(updates)]


def range_test(set_lr: Callable[[float], None], update: Callable[[], float], start: float = 1e-7,
               end: float = 10.0, updates: int = 200) -> RangeTest:
    """Per update: set_lr(lr), then update() trains one step and returns the loss of its batch
    (computed before the step). Stops at `end`, or when the loss is not finite or the smoothed loss
    exceeds DIVERGED times its lowest."""
    out = RangeTest()
    average, best = 0.0, math.inf
    for i, lr in enumerate(ramp(start, end, updates)):
        set_lr(lr)
        loss = update()
        if not math.isfinite(loss):
            out.diverged = True
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        out.lrs.append(lr)
        out.losses.append(loss)
        out.smoothed.append(smoothed)
        if smoothed > DIVERGED * best:
            out.diverged = True
            break
        best = min(best, smoothed)
    if not out.lrs:
        raise ValueError(f"the loss at lr {start:g} is not finite: nothing to suggest from")
    return out
