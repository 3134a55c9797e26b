"""The five tricks, each against an independent truth: torch's scheduler and loss, pixel counts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from podium.config import config_from_dict
from podium.config.sections import MixConfig
from podium.train.losses import smooth, soft_targets, train_loss_fn
from podium.train.mix import draw_mixing, mix, partner_mask
from podium.train.schedule import lr_curve, resize_note, size_at, smallest_size

# --- Cosine decay with warm restarts ---------------------------------------------------------

@pytest.mark.parametrize("per_epoch,t0,t_mult,epochs", [(17, 1, 2, 31), (7, 2, 1, 20), (5, 3, 3, 40), (13, 1, 2, 63)])
def test_cosine_restarts_equal_torch_at_every_update(per_epoch, t0, t_mult, epochs):
    cfg = config_from_dict({"train": {"epochs": epochs, "lr": 0.1},
                            "scheduler": {"name": "cosine_restarts", "t0_epochs": t0, "t_mult": t_mult,
                                          "warmup_epochs": 0, "lr_min": 1e-4, "cycle_decay": 1.0}})
    ours = lr_curve(cfg, per_epoch)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=per_epoch * t0, T_mult=t_mult, eta_min=1e-4)
    theirs = []
    for _ in ours:
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert len(ours) == per_epoch * epochs
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert ours.count(0.1) >= 2  # it really restarts


def test_warmup_cycle_decay_and_default_cycles_end_with_training():
    cfg = config_from_dict({"train": {"epochs": 12, "lr": 0.01},
                            "scheduler": {"warmup_epochs": 1, "lr_min": 0.0, "cycle_decay": 0.5}})
    lrs = lr_curve(cfg, 10)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.005) and lrs[10] == pytest.approx(0.01)  # linear warmup
    restarts = [i for i in range(11, len(lrs)) if lrs[i] > lrs[i - 1]]
    assert len(restarts) == 1 and lrs[restarts[0]] == pytest.approx(0.005)  # the restart peaks at gamma * lr
    assert lrs[-1] < 0.01 * 0.01  # training ends at the bottom of a cycle, not on a restart


# --- Label smoothing -------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smoothed_soft_target_loss_equals_torch_label_smoothing(eps):
    torch.manual_seed(0)
    logits, y = torch.randn(9, 7), torch.randint(0, 7, (9,))
    ours = train_loss_fn("multiclass")(logits, smooth(soft_targets(y, "multiclass", 7), eps, "multiclass"))
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=eps)(logits, y)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_sigmoid_smoothing_is_the_09_01_rule_at_eps_02():
    y = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.allclose(smooth(y, 0.2, "multilabel"), torch.tensor([[0.9, 0.1, 0.9]]))
    rows = smooth(F.one_hot(torch.tensor([2]), 5).float(), 0.1, "multiclass")
    assert rows.sum().item() == pytest.approx(1.0) and rows.max().item() == pytest.approx(0.92)


# --- Mixup and CutMix ------------------------------------------------------------------------

def _batch(n, h=12, w=16, k=4):
    torch.manual_seed(n)
    return torch.rand(n, 3, h, w), F.one_hot(torch.arange(n) % k, k).float()


def test_mixup_mixes_images_and_targets_with_the_same_lambda():
    x, y = _batch(6)
    cfg = MixConfig(mixup_alpha=0.4, cutmix_alpha=0.0, prob=1.0)
    pi, draws = draw_mixing(cfg, 6, 12, 16, np.random.default_rng(3))
    xm, ym, w = mix(x, y, np.random.default_rng(3), cfg)
    lam = draws[0][1]
    assert draws[0][0] == "mixup" and 0 < lam < 1
    perm = torch.from_numpy(pi)
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm], atol=1e-6)
    assert torch.allclose(ym, lam * y + (1 - lam) * y[perm], atol=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_cutmix_target_weight_is_the_fraction_of_partner_pixels(seed):
    """Boxes are often clipped at the border: the weight must follow the pasted box, not lambda."""
    n, h, w = 5, 11, 17
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).contiguous()  # image i == i
    y = F.one_hot(torch.arange(n), n).float()
    cfg = MixConfig(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, mode="elem")
    pi, _ = draw_mixing(cfg, n, h, w, np.random.default_rng(seed))
    xm, ym, weight = mix(x, y, np.random.default_rng(seed), cfg)
    for i in range(n):
        if pi[i] == i:
            continue
        taken = (xm[i, 0] == float(pi[i])).float().mean().item()  # pixels that came from the partner
        assert weight[i].item() == pytest.approx(taken)
        assert ym[i, pi[i]].item() == pytest.approx(taken) and ym[i, i].item() == pytest.approx(1 - taken)


def test_mixing_then_smoothing_sums_to_one_and_smooths_once():
    x, y = _batch(7, k=5)
    xm, ym, _ = mix(x, y, np.random.default_rng(0), MixConfig(prob=1.0))
    q = smooth(ym, 0.1, "multiclass")
    assert torch.allclose(q.sum(dim=1), torch.ones(7))
    assert q.min().item() >= 0.1 / 5 - 1e-7  # eps/K floor once, not twice
    assert torch.allclose(q, 0.9 * ym + 0.02)


@pytest.mark.parametrize("n", [1, 3, 7])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_odd_batches_and_multilabel_targets(n, mode):
    x = torch.rand(n, 3, 9, 9)
    y = torch.randint(0, 2, (n, 3)).float()  # multilabel
    xm, ym, w = mix(x, y, np.random.default_rng(n), MixConfig(prob=1.0, mode=mode))
    assert xm.shape == x.shape and ym.shape == y.shape and w.shape == (n,)
    assert ((ym >= 0) & (ym <= 1)).all()
    if n == 1:  # a batch of one mixes with itself: nothing changes
        assert torch.allclose(xm, x) and torch.allclose(ym, y)


def test_prob_zero_and_batch_mode_share_one_draw():
    x, y = _batch(8)
    xm, ym, w = mix(x, y, np.random.default_rng(0), MixConfig(prob=0.0))
    assert torch.equal(xm, x) and torch.equal(ym, y)
    _, draws = draw_mixing(MixConfig(prob=1.0, mode="batch"), 8, 12, 16, np.random.default_rng(1))
    assert len({(d[0], d[1]) for d in draws}) == 1
    mask = partner_mask(draws, 12, 16)
    assert torch.allclose(mask.flatten(1).mean(1), mask.flatten(1).mean(1)[0].expand(8))


# --- Progressive resizing --------------------------------------------------------------------

def test_size_ramp_ends_at_full_size_for_the_last_fifth():
    cfg = config_from_dict({"train": {"epochs": 20, "image_size": 256}})
    sizes = [size_at(e, cfg) for e in range(20)]
    assert sizes[0] == 128 and all(s % 32 == 0 for s in sizes)
    assert sizes == sorted(sizes) and sizes[-4:] == [256] * 4
    off = config_from_dict({"train": {"epochs": 20, "image_size": 256}, "resize": {"enabled": False}})
    assert {size_at(e, off) for e in range(20)} == {256}
    explicit = config_from_dict({"train": {"epochs": 6, "image_size": 64}, "resize": {"sizes": [[0, 32], [3, 64]]}})
    assert [size_at(e, explicit) for e in range(6)] == [32, 32, 32, 64, 64, 64]


def test_size_ramp_never_goes_below_twice_the_models_stride():
    """The floor, 2 x the model's stride, is the least size at which its last feature map is more
    than one pixel across (a real forward pass says so); below it the last stage's 3x3 kernels get
    gradient on their centre tap only, so the other taps meet real pixels untrained when the size
    grows. A 32 px competition on a stride-32 ResNet therefore trains at full size throughout."""
    import timm

    model = timm.create_model("test_resnet", num_classes=3)
    cfg = config_from_dict({"model": {"name": "test_resnet"}, "train": {"epochs": 12, "image_size": 32},
                            "resize": {"step": 8}})
    floor = smallest_size(cfg)
    assert floor == 64
    assert model.forward_features(torch.zeros(2, 3, floor, floor)).shape[-2:] == (2, 2)
    assert model.forward_features(torch.zeros(2, 3, floor // 2, floor // 2)).shape[-2:] == (1, 1)

    # why: at a 1x1 last map only the centre tap of the last 3x3 conv is trained
    for norm in model.modules():  # timm zero-initializes each block's last BatchNorm scale
        if isinstance(norm, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(norm.weight)
    conv = [m for m in model.layer4.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)][-1]
    for size, outer_trained in ((32, False), (floor, True)):
        model.zero_grad()
        model(torch.randn(4, 3, size, size)).sum().backward()
        outer = conv.weight.grad.clone()
        outer[..., 1, 1] = 0
        assert bool(outer.abs().sum() > 0) is outer_trained, size

    assert {size_at(e, cfg) for e in range(12)} == {32}
    assert "no room below train.image_size=32" in resize_note(cfg)
    # larger images ramp from their half size, floored at 64
    big = config_from_dict({"model": {"name": "test_resnet"}, "train": {"epochs": 10, "image_size": 96},
                            "resize": {"step": 16}})
    assert [size_at(e, big) for e in range(10)] == [64] * 7 + [80, 96, 96] and resize_note(big) is None
    # an explicit floor, and explicit sizes, are taken as written
    low = config_from_dict({"model": {"name": "test_resnet"}, "train": {"epochs": 12, "image_size": 32},
                            "resize": {"step": 8, "min_size": 8}})
    assert size_at(0, low) == 16 and resize_note(low) is None
    explicit = cfg.model_copy(update={"resize": cfg.resize.model_copy(update={"sizes": [[0, 16], [6, 32]]})})
    assert [size_at(e, explicit) for e in (0, 6)] == [16, 32]


def test_with_pretrained_weights_the_ramp_never_goes_below_the_size_they_were_trained_at():
    """ImageNet weights learned objects at 224 px: the ramp starts there (a 384 px fine-tune ramps
    224 -> 384), and a fine-tune at 224 px or less trains at full size throughout, saying why."""
    def made(size, **model):
        return config_from_dict({"model": {"name": "tf_efficientnet_lite0", **model},
                                 "train": {"epochs": 10, "image_size": size}})

    assert smallest_size(made(384)) == 64  # from scratch: the stride's floor
    tuned = made(384, pretrained_file="w.pth")
    assert smallest_size(tuned) == 224
    sizes = [size_at(e, tuned) for e in range(10)]
    assert sizes[0] == 224 and sizes[-2:] == [384, 384] and sizes == sorted(sizes)
    assert resize_note(tuned) is None
    small = made(192, pretrained=True)
    assert {size_at(e, small) for e in range(10)} == {192}
    assert "the size tf_efficientnet_lite0's pretrained weights were trained at" in resize_note(small)
    assert smallest_size(made(192, pretrained=True).model_copy(
        update={"resize": small.resize.model_copy(update={"min_size": 96})})) == 96  # explicit wins


def test_best_epoch_is_chosen_among_full_size_validations_only():
    """Scores at a smaller validation size do not compare with full-size ones (progressive
    resizing validates at the training size): the first full-size epoch replaces any earlier best,
    however good its score was, and later smaller ones never replace a full-size best."""
    import torch

    from podium.train.state import FoldState

    def weights(v):
        return {"w": torch.full((2,), float(v))}

    state = FoldState()
    assert state.keep_if_best(0.10, 0, "accuracy", weights(0), full=False)  # the first always counts
    assert state.keep_if_best(0.90, 1, "accuracy", weights(1), full=False)  # better, still small
    assert not state.keep_if_best(0.50, 2, "accuracy", weights(2), full=False)
    assert state.keep_if_best(0.60, 3, "accuracy", weights(3), full=True)  # full size: takes over
    assert state.best_epoch == 3 and state.best_full and float(state.best_weights["w"][0]) == 3
    assert not state.keep_if_best(0.99, 4, "accuracy", weights(4), full=False)  # small never replaces it
    assert not state.keep_if_best(0.55, 5, "accuracy", weights(5), full=True)
    assert state.keep_if_best(0.70, 6, "accuracy", weights(6), full=True) and state.best_epoch == 6
    log = FoldState()  # lower-better metrics the same way
    log.keep_if_best(0.2, 0, "log_loss", weights(0), full=True)
    assert not log.keep_if_best(0.3, 1, "log_loss", weights(1), full=True)
    assert log.keep_if_best(0.1, 2, "log_loss", weights(2), full=True)
