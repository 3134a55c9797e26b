"""The benchmark's own code paths, on a tiny model: CI has no GPU, so figure 5 would otherwise
only ever run where a crash costs rented time."""

import sys

from conftest import REPO, tiny_config, write_competition

sys.path.insert(0, str(REPO / "benchmarks"))

import bench  # noqa: E402


def test_gpu_figure_path_runs_end_to_end_on_a_tiny_model(tmp_path):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", train={"num_workers": 1})
    comp, data_hash = bench.preflight(cfg)
    out = bench.gpu_figure(cfg, comp, tmp_path / "cache", data_hash, model_name="test_resnet", size=16, batch=8,
                           images=48)
    assert out["images_per_s"] > 0 and out["synthetic_images_per_s"] > 0
    assert out["gpu_step_fraction"] == out["images_per_s"] / out["synthetic_images_per_s"]
    assert (out["model"], out["image_size"], out["batch_size"]) == ("test_resnet", 16, 8)


def test_timm_pipeline_figure_runs_both_passes_on_a_tiny_model(tmp_path):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", model={"name": "test_resnet"}, train={"batch_size": 8})
    comp, data_hash = bench.preflight(cfg)
    folder = bench.timm_folder(cfg, comp, tmp_path / "folder")
    # timm's folder reader sees every training image once, under its label
    assert sorted(p.parent.name for p in folder.glob("*/*")) == sorted(map(str, comp.train[cfg.data.target]))
    accelerator, model, speed = bench._step_setup(cfg, comp)
    assert (speed.precision, speed.channels_last) == ("no", False)
    out = bench.over_timm_pipeline(cfg, comp, None, accelerator, model, folder, epochs=1)
    assert out["podium_pass_images_per_s"] > 0 and out["timm_pipeline_images_per_s"] > 0
    assert out["over_timm_pipeline"] == out["podium_pass_images_per_s"] / out["timm_pipeline_images_per_s"]


def test_step_rates_time_every_step_on_every_batch():
    calls = {"a": [], "b": []}
    steps = {name: (lambda b, name=name: calls[name].append(b)) for name in calls}
    batches = [([0] * 4,), ([0] * 4,), ([0] * 2,)]
    rates = bench.step_rates(steps, batches, rounds=3)
    # one warm-up call on batch 0, then each batch once per round, for both
    assert calls["a"] == calls["b"] == [0] + [0, 1, 2] * 3
    assert set(rates) == {"a", "b"} and all(r > 0 for r in rates.values())
