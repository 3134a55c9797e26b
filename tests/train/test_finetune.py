"""Fine-tuning and imbalance switches, each against an independent truth: timm's own layer
grouping, hand-written focal-loss formulas, binomial counts, real optimizer steps."""

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from timm.layers import DropPath
from timm.loss import SoftTargetCrossEntropy
from torch.utils.data import DataLoader, TensorDataset

from podium.config import config_from_dict
from podium.data.competition import load_competition
from podium.data.datasets import BalancedSampler, Normalize, class_index
from podium.errors import PodiumError
from podium.evaluate.plots import row_shares
from podium.stages.check import preflight
from podium.stages.schedule import run_schedule
from podium.train.loop import train_one_epoch
from podium.train.losses import FocalLoss, train_loss_fn
from podium.train.models import backbone_parameters, check_fine_tuning, create_model, head_parameters
from podium.train.optimizer import build_optimizer, freeze, scheduled_lr
from podium.train.schedule import lr_curve, lr_scheduler
from podium.train.state import Step

from conftest import ok, podium, tiny_config, write_competition, write_config


def _cfg(**train):
    return config_from_dict({"model": {"name": "test_resnet"}, "train": {"lr": 0.01, "epochs": 2, **train},
                             "scheduler": {"warmup_epochs": 0}})


# --- The optimizer's groups ------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_no_weight_decay_on_biases_and_norm_weights(optimizer):
    cfg = _cfg(optimizer=optimizer, weight_decay=0.05, momentum=0.8)
    model = create_model(cfg.model, 3)
    opt = build_optimizer(model, cfg)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert len(decay_of) == len(list(model.parameters())) == sum(len(g["params"]) for g in opt.param_groups)
    ones = [p for p in model.parameters() if p.ndim <= 1]
    assert ones and all(decay_of[id(p)] == 0.0 for p in ones)
    assert all(decay_of[id(p)] == 0.05 for p in model.parameters() if p.ndim >= 2)
    if optimizer == "sgd":
        assert isinstance(opt, torch.optim.SGD)
        assert all(g["nesterov"] and g["momentum"] == 0.8 for g in opt.param_groups)
    else:
        assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"]  # torch has a CPU kernel


def test_layer_decay_scales_are_timms_and_the_scheduler_applies_them():
    cfg = _cfg(layer_decay=0.7)
    model = create_model(cfg.model, 3)
    opt = build_optimizer(model, cfg)
    # timm's layer of every parameter, from its group_matcher; the top layer trains at scale 1
    layer = timm.models.group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    top = max(layer.values())
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert scale_of[id(p)] == pytest.approx(0.7 ** (top - layer[name]), rel=1e-12), name
    assert len(set(scale_of.values())) == top + 1 > 3
    assert all(scale_of[id(p)] == 1.0 for p in head_parameters(model))  # the classifier: the top group
    # the same groups as timm's factory called directly
    theirs = timm.optim.create_optimizer_v2(model, "adamw", lr=0.01, weight_decay=0.05, layer_decay=0.7)
    assert sorted((g["lr_scale"], g["weight_decay"], len(g["params"])) for g in opt.param_groups) == \
        sorted((g["lr_scale"], g["weight_decay"], len(g["params"])) for g in theirs.param_groups)

    scheduler = lr_scheduler(opt, cfg, 5)
    scheduler.step_update(3)
    base = lr_curve(cfg, 5)[3]
    assert base < cfg.train.lr  # past the peak: the cosine has moved
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(base * g["lr_scale"], rel=1e-12)
    assert scheduled_lr(opt) == pytest.approx(base, rel=1e-12)


def test_schedule_shows_the_group_lr_range_and_the_frozen_epochs(tmp_path):
    data, _ = write_competition(tmp_path / "comp", n_train=60, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", model={"name": "test_resnet"},
                      train={"epochs": 3, "freeze_epochs": 1, "layer_decay": 0.5})
    table = pd.read_csv(run_schedule(cfg))
    per_epoch = int((table["epoch"] == 0).sum())
    lowest = 0.5 ** 5  # test_resnet: stem, 4 stages, and the top group (classifier) at scale 1
    assert table["frozen"].tolist() == [True] * per_epoch + [False] * (2 * per_epoch)
    assert (table.loc[table["frozen"], "lr_group_min"] == 0).all()
    after = table[~table["frozen"]]
    np.testing.assert_allclose(after["lr_group_min"], after["lr"] * lowest, rtol=1e-12)
    np.testing.assert_allclose(table["lr_group_max"], table["lr"], rtol=1e-12)
    assert (tmp_path / "runs" / "t" / "schedule.png").is_file()


# --- Freezing ----------------------------------------------------------------------------------

def _step(cfg, model):
    """A Step as build_step makes one, on the CPU, without loaders."""
    comp = load_competition(cfg)
    accelerator = Accelerator(cpu=True)
    opt = build_optimizer(model, cfg)
    backbone = backbone_parameters(model)
    model, opt = accelerator.prepare(model, opt)
    normalize = Normalize(cfg.augment.mean, cfg.augment.std, accelerator.device)
    return Step(cfg, comp, accelerator, model, opt, lr_scheduler(opt, cfg, 3), normalize,
                train_loss_fn(comp.task), None, backbone)


def test_frozen_epochs_train_the_head_only_then_everything(tmp_path):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    # weight decay large enough that a decayed weight would visibly move
    cfg = tiny_config(data, tmp_path / "runs", model={"name": "test_resnet"},
                      train={"freeze_epochs": 1, "weight_decay": 0.5, "epochs": 2},
                      mix={"mixup_alpha": 0, "cutmix_alpha": 0})
    torch.manual_seed(0)
    model = create_model(cfg.model, 3)
    step = _step(cfg, model)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=gen), torch.zeros(8, 0),
                torch.randint(0, 3, (8,), generator=gen), torch.arange(8)) for _ in range(3)]
    head_ids = {id(p) for p in head_parameters(model)}
    backbone = step.backbone
    assert backbone and head_ids and not head_ids & {id(p) for p in backbone}

    def snapshot(params):
        return [p.detach().clone() for p in params]

    before_backbone, before_head = snapshot(backbone), snapshot(head_parameters(model))
    freeze(backbone, frozen=True)
    model.train()
    update, loss, _, _ = train_one_epoch(step, batches, 0, None)
    assert update == 3 and np.isfinite(loss)
    assert all(torch.equal(a, p) for a, p in zip(before_backbone, backbone, strict=True))
    assert all(not torch.equal(a, p) for a, p in zip(before_head, head_parameters(model), strict=True))
    state = step.optimizer.optimizer.state
    assert not any(id(p) in {id(q) for q in state} for p in backbone)  # no moments for frozen weights

    freeze(backbone, frozen=False)
    mid = snapshot(backbone)
    train_one_epoch(step, batches, update, None)
    assert all(p.requires_grad for p in model.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(mid, backbone, strict=True) if p.ndim >= 2)


def test_freezing_needs_a_classifier_with_parameters():
    cfg = _cfg(freeze_epochs=1)
    check_fine_tuning(create_model(cfg.model, 3), cfg)  # accepted
    with pytest.raises(PodiumError, match="train.freeze_epochs"):
        check_fine_tuning(torch.nn.Sequential(torch.nn.Linear(2, 2)), cfg)


# --- Drop path, gradient checkpointing, layer decay: what the model must support ----------------

def test_drop_path_rate_reaches_the_blocks():
    def rates(model):
        return [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]

    assert rates(create_model(_cfg().model, 3)) == []
    cfg = config_from_dict({"model": {"name": "test_resnet", "drop_path_rate": 0.2}})
    got = rates(create_model(cfg.model, 3))
    assert got and max(got) == pytest.approx(0.2) and got == sorted(got)  # ramped up to the last block
    with pytest.raises(PodiumError, match="model.drop_path_rate"):
        create_model(config_from_dict({"model": {"name": "dla46_c", "drop_path_rate": 0.1}}).model, 3)


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = _cfg(grad_checkpointing=True)
    torch.manual_seed(0)
    plain = create_model(cfg.model, 3)
    checkpointed = create_model(cfg.model, 3)
    checkpointed.load_state_dict(plain.state_dict())
    check_fine_tuning(checkpointed, cfg)
    assert checkpointed.grad_checkpointing and not plain.grad_checkpointing
    x = torch.randn(4, 3, 32, 32)
    for model in (plain, checkpointed):
        model.train()
        model(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("model,train,key", [("dla46_c", {"grad_checkpointing": True}, "train.grad_checkpointing"),
                                             ("pit_ti_224", {"layer_decay": 0.8}, "train.layer_decay")])
def test_preflight_refuses_what_the_model_cannot_do(tmp_path, model, train, key):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", model={"name": model}, train=train)
    with pytest.raises(PodiumError, match=f"config key '{key}'") as err:
        preflight(cfg)
    assert "\n" not in str(err.value)


# --- The balanced sampler ----------------------------------------------------------------------

def test_balanced_sampler_draws_classes_equally_and_is_a_function_of_seed_and_epoch():
    classes = np.repeat([0, 1, 2], [500, 100, 20])
    sampler = BalancedSampler(classes, seed=3)
    draws = []
    for epoch in range(50):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == len(classes)
        draws += order
    n = len(draws)
    counts = np.bincount(classes[draws], minlength=3)
    sigma = np.sqrt(n * (1 / 3) * (2 / 3))  # binomial
    assert np.all(np.abs(counts - n / 3) < 4 * sigma), counts
    assert set(draws) >= set(np.flatnonzero(classes == 2))  # every rare row turns up

    def order(seed, epoch):
        s = BalancedSampler(classes, seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(3, 7) == order(3, 7)
    assert order(3, 7) != order(3, 8) and order(3, 7) != order(4, 7)


def test_accelerate_shards_the_balanced_order_across_processes():
    classes = np.repeat([0, 1, 2], [30, 6, 4])
    data = TensorDataset(torch.arange(len(classes)))

    def loader():
        return DataLoader(data, batch_size=4, drop_last=True, sampler=BalancedSampler(classes, 7))

    whole = loader()
    whole.sampler.set_epoch(3)
    expected = [b[0].tolist() for b in whole]
    shards = []
    for rank in (0, 1):
        shard = prepare_data_loader(loader(), num_processes=2, process_index=rank, put_on_device=False,
                                    use_seedable_sampler=True)
        shard.set_epoch(3)  # reaches the sampler through Accelerate's batch-sampler wrapper
        shards.append([b[0].tolist() for b in shard])
    assert [b for pair in zip(*shards, strict=True) for b in pair] == expected


def test_class_index_of_hard_and_soft_targets():
    assert class_index(np.array([2, 0, 1]), "multiclass").tolist() == [2, 0, 1]
    assert class_index(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]), "multiclass").tolist() == [1, 0]
    assert class_index(np.array([1.0, 0.0]), "binary").tolist() == [1, 0]
    assert class_index(np.array([[0.8], [0.3]]), "binary").tolist() == [1, 0]


@pytest.mark.parametrize("task,target", [("multilabel", "tags"), ("regression", "score")])
def test_balanced_sampler_and_focal_loss_refused_where_they_mean_nothing(task, target):
    with pytest.raises(PodiumError, match="train.sampler: balanced needs a multiclass or binary task"):
        config_from_dict({"data": {"task": task, "target": target}, "train": {"sampler": "balanced"},
                          "metric": "f1_micro" if task == "multilabel" else "rmse",
                          "folds": {"strategy": "kfold"}})
    if task == "regression":
        with pytest.raises(PodiumError, match="loss.focal_gamma"):
            config_from_dict({"data": {"task": task, "target": target}, "loss": {"focal_gamma": 2.0},
                              "metric": "rmse", "folds": {"strategy": "kfold"}})


# --- Focal loss --------------------------------------------------------------------------------

def test_focal_loss_at_gamma_0_is_the_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(9, 5), torch.randint(0, 5, (9,))
    one_hot = F.one_hot(y, 5).float()
    expected = torch.nn.CrossEntropyLoss()(logits, y)
    assert isinstance(train_loss_fn("multiclass", 0.0), SoftTargetCrossEntropy)  # today's loss, untouched
    assert train_loss_fn("multiclass", 0.0)(logits, one_hot).item() == pytest.approx(expected.item(), rel=1e-6)
    assert FocalLoss(0.0, sigmoid=False)(logits, one_hot).item() == pytest.approx(expected.item(), rel=1e-6)
    z, q = torch.randn(6, 4), torch.rand(6, 4)
    expected = torch.nn.BCEWithLogitsLoss()(z, q)
    assert isinstance(train_loss_fn("multilabel", 0.0), torch.nn.BCEWithLogitsLoss)
    assert FocalLoss(0.0, sigmoid=True)(z, q).item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_loss_at_gamma_2_matches_the_formula():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]])
    q = np.array([[0.8, 0.1, 0.1], [0.0, 1.0, 0.0]])  # a soft (mixed, smoothed) row and a hard one
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.mean(np.sum(-q * (1 - p) ** 2 * np.log(p), axis=1))
    ours = train_loss_fn("multiclass", 2.0)(torch.tensor(logits, dtype=torch.float32),
                                            torch.tensor(q, dtype=torch.float32))
    assert ours.item() == pytest.approx(expected, rel=1e-5)

    z = np.array([[1.5, -0.5], [-2.0, 0.3]])
    t = np.array([[1.0, 0.0], [0.9, 0.1]])
    s = 1 / (1 + np.exp(-z))
    expected = np.mean(-(t * (1 - s) ** 2 * np.log(s) + (1 - t) * s ** 2 * np.log(1 - s)))
    ours = train_loss_fn("multilabel", 2.0)(torch.tensor(z, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    # the sigmoid form is the softmax form over the two classes (x, 0)
    x = torch.tensor(z, dtype=torch.float32).reshape(-1, 1)
    pairs = torch.cat([x, torch.zeros_like(x)], dim=1)
    targets = torch.tensor(t, dtype=torch.float32).reshape(-1, 1)
    as_softmax = FocalLoss(2.0, sigmoid=False)(pairs, torch.cat([targets, 1 - targets], dim=1))
    assert ours.item() == pytest.approx(as_softmax.item(), rel=1e-5)


def test_focal_loss_matches_torchvision_on_hard_labels_and_stays_finite():
    from torchvision.ops import sigmoid_focal_loss

    torch.manual_seed(1)
    z, t = torch.randn(7, 3), torch.randint(0, 2, (7, 3)).float()
    theirs = sigmoid_focal_loss(z, t, alpha=-1, gamma=1.5, reduction="mean")
    assert FocalLoss(1.5, sigmoid=True)(z, t).item() == pytest.approx(theirs.item(), rel=1e-5)
    # a probability that rounds to 1, with gamma < 1: no NaN in the loss or its gradient
    logits = torch.tensor([[200.0, -200.0]], requires_grad=True)
    loss = FocalLoss(0.5, sigmoid=False)(logits, torch.tensor([[1.0, 0.0]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --- The report's confusion matrix -------------------------------------------------------------

def test_confusion_rows_are_shares_of_the_true_class():
    shares = row_shares(np.array([[1, 2, 0], [0, 4, 0], [0, 0, 0]]))
    np.testing.assert_allclose(shares, [[1 / 3, 2 / 3, 0], [0, 1, 0], [0, 0, 0]])


# --- All of it in one real training run ----------------------------------------------------------

@pytest.mark.slow
def test_a_fold_trains_with_every_switch_on(tmp_path, competition):
    cfg = tiny_config(competition, tmp_path / "runs", model={"name": "test_resnet", "drop_path_rate": 0.1},
                      train={"epochs": 2, "batch_size": 8, "freeze_epochs": 1, "layer_decay": 0.75,
                             "grad_checkpointing": True, "sampler": "balanced", "optimizer": "sgd"},
                      loss={"focal_gamma": 2.0})
    config = write_config(cfg, tmp_path / "all.yaml")
    ok(podium("train", "--config", str(config), "--fold", "0"))
    history = pd.read_csv(tmp_path / "runs" / "all" / "fold0" / "history.csv")
    assert history["frozen"].tolist() == [True, False]
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(history["valid_loss"]).all()
