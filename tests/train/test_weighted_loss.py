"""Row weights in the training loss (data.extra's `weight`): each loss row by row against torch's
own reductions, a weight of 2 against the row given twice, and weights mixed with their images."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from podium.config.sections import MixConfig
from podium.train.losses import per_row_loss, train_loss_fn, weighted_loss
from podium.train.mix import mix


def _batch(task, n=6, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1 if task in ("binary", "regression") else k, generator=g)
    if task == "multiclass":
        target = F.softmax(torch.randn(n, k, generator=g), dim=1)
    elif task == "regression":
        target = torch.randn(n, 1, generator=g)
    else:
        target = torch.rand(logits.shape, generator=g)
    return logits, target


@pytest.mark.parametrize("task,gamma", [("multiclass", 0.0), ("multiclass", 2.0), ("binary", 0.0), ("multilabel", 0.0),
                                        ("multilabel", 1.5), ("regression", 0.0)])
def test_row_losses_average_to_the_batch_loss_and_a_weight_of_two_is_the_row_twice(task, gamma):
    loss_fn = train_loss_fn(task, gamma)
    logits, target = _batch(task)
    torch.testing.assert_close(per_row_loss(loss_fn, logits, target).mean(), loss_fn(logits, target))
    weights = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 2.0])
    repeat = torch.repeat_interleave(torch.arange(6), weights.long())
    torch.testing.assert_close(weighted_loss(loss_fn, logits, target, weights),
                               loss_fn(logits[repeat], target[repeat]))


def test_hard_label_cross_entropy_weighted_as_torch_weighs_it():
    logits, _ = _batch("multiclass", n=8, k=5, seed=3)
    labels = torch.arange(8) % 5
    weights = torch.rand(8, generator=torch.Generator().manual_seed(4)) + 0.1
    got = weighted_loss(train_loss_fn("multiclass"), logits, F.one_hot(labels, 5).float(), weights)
    want = (F.cross_entropy(logits, labels, reduction="none") * weights).sum() / weights.sum()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_a_weight_column_mixes_with_the_same_partner_and_share_as_the_target(mode):
    """The loop appends the row weights to the targets before mixing: the mixed weight is the same
    blend of the two rows' weights as the mixed target is of theirs (here the target holds the row
    number, and the weight is 2 x row + 1)."""
    n = 8
    rows = torch.arange(n, dtype=torch.float32)
    target = torch.stack([rows, 2 * rows + 1], dim=1)
    images = torch.randn(n, 3, 16, 16)
    cfg = MixConfig(mixup_alpha=0.4, cutmix_alpha=1.0, prob=1.0, mode=mode)
    _, mixed, partner = mix(images, target, np.random.default_rng(0), cfg)
    torch.testing.assert_close(mixed[:, 1], 2 * mixed[:, 0] + 1)
    assert (partner > 0).any()  # something was mixed
