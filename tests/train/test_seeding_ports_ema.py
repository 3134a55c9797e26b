"""Pitfalls other pipelines' users hit: worker seeding, parallel-fold ports, EMA buffers, the
albumentations network check."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from timm.utils import ModelEmaV3

from podium.config.sections import AugmentConfig
from podium.data.datasets import ImageDataset, LoaderState
from podium.train.launch import launch_command


def _augmenting_dataset(paths, state):
    aug = AugmentConfig(train=[{"name": "RandomResizedCrop", "scale": [0.2, 1.0]}, {"name": "HorizontalFlip"}])
    return ImageDataset(paths, np.zeros(len(paths), dtype=np.int64), aug.train, state, 42, "augment.train",
                        augment_seed=True)


def _epoch(ds, workers):
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    return torch.cat([x for x, _, _, _ in loader])


def test_augmentation_is_per_sample_per_epoch_and_independent_of_workers(competition):
    paths = sorted((competition / "train").glob("*.png"))[:8]
    state = LoaderState(16)
    ds = _augmenting_dataset(paths, state)
    no_workers = _epoch(ds, 0)
    assert torch.equal(no_workers, _epoch(ds, 2))  # the same draws with 0 or 2 workers
    same = [torch.equal(no_workers[i], no_workers[j]) for i in range(8) for j in range(i)]
    assert not any(same)  # no two samples share their augmentation
    state.set(1, 16)
    assert not torch.equal(no_workers, _epoch(ds, 2))  # a new epoch draws anew


def test_loader_ships_uint8_and_normalizing_on_the_device_equals_albumentations(competition):
    import albumentations as A

    from podium.data.datasets import Normalize
    from podium.data.images import read_rgb

    aug = AugmentConfig(valid=[{"name": "Resize"}], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    paths = sorted((competition / "train").glob("*.png"))[:4]
    ds = ImageDataset(paths, None, aug.valid, 20, 0, "augment.valid", augment_seed=False)
    batch = torch.stack([ds[i][0] for i in range(len(paths))])
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 20, 20)  # a quarter of float32's bytes
    ours = Normalize(aug.mean, aug.std, "cpu")(batch)
    reference = A.Compose([A.Resize(20, 20), A.Normalize(mean=aug.mean, std=aug.std)])
    expected = torch.from_numpy(np.stack([reference(image=read_rgb(p))["image"] for p in paths])).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert Normalize(aug.mean, aug.std, "cpu", channels_last=True)(batch).is_contiguous(
        memory_format=torch.channels_last)


def test_parallel_folds_get_their_own_port_and_gpu():
    argv0, _, expected0 = launch_command(["w"], None, 0, gpus=0)
    argv1, _, _ = launch_command(["w"], None, 1, gpus=0)
    port = lambda argv: argv[argv.index("--main_process_port") + 1]  # noqa: E731
    assert port(argv0) != port(argv1) and expected0 == 1
    for fold in range(4):
        argv, env, expected = launch_command(["w"], None, fold, gpus=2, pin_gpu=True)
        assert env["CUDA_VISIBLE_DEVICES"] == str(fold % 2) and expected == 1
    argv, env, expected = launch_command(["w"], 2, 0, gpus=0)  # CPU processes form a real group
    assert "--multi_gpu" in argv and env["ACCELERATE_USE_CPU"] == "true" and expected == 2


def test_ema_follows_batchnorm_buffers_too():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = ModelEmaV3(model, decay=0.5, use_warmup=True)
    model.train()
    model(torch.randn(8, 3, 8, 8) + 3.0)  # moves the running mean
    ema.update(model, step=10)
    assert ema.module[1].running_mean.abs().sum() > 0


def test_albumentations_network_check_is_off():
    """Importing podium turns it off before albumentations can be imported, even when nothing
    in the environment does."""
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    code = "import os, podium.data; print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr[-2000:]


@pytest.mark.slow
def test_compile_makes_one_graph_per_image_size_and_mode_at_most(tmp_path, monkeypatch):
    """Pitfall 10: with progressive resizing, torch.compile must not recompile every batch nor
    give up and fall back to eager. Every forward of the whole fold (training at each size,
    validation and the final predictions with a ragged last batch) runs a compiled graph, and
    there are no more graphs than (size, train/eval) pairs."""
    import math

    import torch._dynamo

    from podium.runs.layout import train_inputs
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loop import train_fold
    from podium.train.schedule import size_at

    from conftest import tiny_config, write_competition

    graphs, runs = [], [0]

    def counting_backend(gm, example_inputs):  # dynamo's tracing and guards, without codegen
        images = [t for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[1] == 3
                  and t.shape[2] >= 8]  # the batch, not the first conv's weight
        graphs.append(tuple(images[0].shape) if images else None)

        def run(*args):
            runs[0] += 1
            return gm.forward(*args)
        return run

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=counting_backend))
    torch._dynamo.reset()
    data, _ = write_competition(tmp_path / "comp", n_train=60, n_test=22)
    cfg = tiny_config(data, tmp_path / "runs", train={"epochs": 5, "batch_size": 8, "image_size": 32, "compile": True},
                      resize={"step": 8, "min_size": 8}, predict={"batch_size": 16})
    train_sizes = {size_at(e, cfg) for e in range(cfg.train.epochs)}
    assert len(train_sizes) >= 2
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    train_fold(cfg, 0, train_inputs(cfg, 0, data_hash))
    torch._dynamo.reset()

    n_valid, n_train = 20, 40  # 3 stratified folds of 60 rows
    forwards = (cfg.train.epochs * (n_train // 8)  # training batches (the last incomplete one dropped)
                + (cfg.train.epochs + 1) * math.ceil(n_valid / 16)  # each epoch's validation, the final OOF
                + math.ceil(22 / 16))  # the test set
    assert runs[0] == forwards, "some forward passes ran eagerly (recompile limit?)"
    # one graph at most per (size, train/eval) pair: validation runs at each training size too
    assert 1 <= len(graphs) <= 2 * len(train_sizes), graphs
