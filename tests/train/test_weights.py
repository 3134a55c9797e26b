"""Pretrained weights, verified: every tensor of the model but a replaced classifier comes from
the file (compared tensor by tensor), a file under other names is refused in one line, or mapped
by order with model.pretrained_remap, and a file that does not fit is refused before training."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from podium.config.sections import ModelConfig
from podium.errors import PodiumError
from podium.train.models import build_model
from podium.train.weights import classifier_keys

from conftest import podium, tiny_config, write_competition, write_config
from helpers import write_hub_cache

NAME = "test_efficientnet"


def _source(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    model, _ = build_model(ModelConfig(name=NAME), num_classes)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _save(tensors: dict, path):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def _foreign(tensors: dict) -> dict:
    """The same tensors in the same order under another implementation's names."""
    return {f"_blocks.{i}._{k.replace('.', '_')}": v for i, (k, v) in enumerate(tensors.items())}


def _save_ordered(tensors: dict, path):
    """A torch checkpoint: it keeps the tensors' order (a .safetensors file sorts them by name)."""
    torch.save(tensors, path)
    return path


def _build(path, num_outputs: int = 7, **model):
    torch.manual_seed(999)  # another init: equality below can only come from the file
    return build_model(ModelConfig(name=NAME, pretrained_file=str(path), **model), num_outputs)


def test_every_tensor_but_a_new_classifier_comes_from_the_file(tmp_path):
    source = _source()
    model, loaded = _build(_save(source, tmp_path / "w.safetensors"))
    head = classifier_keys(model)
    assert head == ["classifier.weight", "classifier.bias"]
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in state if k not in head)
    assert model.get_classifier().out_features == 7
    assert (loaded.tensors, loaded.of, loaded.classifier) == (len(state) - 2, len(state), "new")
    assert "w.safetensors" in str(loaded) and "a new classifier" in str(loaded)


def test_a_file_with_the_same_classes_loads_its_classifier_too(tmp_path):
    source = _source(7)
    model, loaded = _build(_save(source, tmp_path / "w.safetensors"))
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())
    assert (loaded.tensors, loaded.classifier) == (len(source), "loaded")


def test_wrapped_checkpoint_with_a_ddp_prefix_loads(tmp_path):
    source = _source()
    path = tmp_path / "w.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.items()}}, path)
    model, loaded = _build(path)
    assert all(torch.equal(model.state_dict()[k], source[k]) for k in source if not k.startswith("classifier"))
    assert loaded.classifier == "new"


def test_foreign_names_are_refused_in_one_line_then_mapped_by_order(tmp_path):
    source = _source()
    path = _save_ordered(_foreign(source), tmp_path / "foreign.pth")
    with pytest.raises(PodiumError) as refused:
        _build(path)
    message = str(refused.value)
    body = len(source) - 2
    assert "\n" not in message and f"fits 0 of {body} tensors of {NAME}" in message
    assert "model.pretrained_remap: true" in message and "_blocks.0._conv_stem_weight" in message

    model, loaded = _build(path, pretrained_remap=True)
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in source if not k.startswith("classifier"))
    assert (loaded.tensors, loaded.classifier) == (body, "new")

    # A .safetensors file keeps no order (its tensors are stored by name): refused, not guessed.
    with pytest.raises(PodiumError, match="safetensors.*order"):
        _build(_save(_foreign(source), tmp_path / "foreign.safetensors"), pretrained_remap=True)


def test_remap_refuses_another_network(tmp_path):
    torch.manual_seed(0)
    other, _ = build_model(ModelConfig(name="test_resnet"), 1000)
    path = _save_ordered(_foreign(other.state_dict()), tmp_path / "resnet.pth")
    with pytest.raises(PodiumError, match="counts differ|another shape"):
        _build(path, pretrained_remap=True)
    source = _source()
    swapped = dict(source)
    first = next(iter(swapped))
    swapped[first] = torch.zeros(*source[first].shape[:-1], source[first].shape[-1] + 1)
    with pytest.raises(PodiumError, match=r"tensor 1 has another shape.*conv_stem\.weight"):
        _build(_save_ordered(_foreign(swapped), tmp_path / "bad.pth"), pretrained_remap=True)


def test_a_file_of_a_larger_network_or_other_shapes_is_refused(tmp_path):
    source = _source()
    larger = {**source, "blocks.9.0.conv.weight": torch.zeros(4, 4, 1, 1)}
    with pytest.raises(PodiumError, match="1 more in the file.*blocks.9.0.conv.weight.*larger network"):
        _build(_save(larger, tmp_path / "larger.safetensors"))
    first = next(iter(source))
    reshaped = {**source, first: torch.zeros(1, *source[first].shape[1:])}
    with pytest.raises(PodiumError, match=r"1 of other shapes.*conv_stem\.weight"):
        _build(_save(reshaped, tmp_path / "other.safetensors"))


def test_make_check_refuses_foreign_weights_in_one_line_and_takes_them_remapped(tmp_path):
    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    path = _save_ordered(_foreign(_source()), tmp_path / "foreign.pth")
    cfg = tiny_config(data, tmp_path / "runs", model={"name": NAME, "pretrained_file": str(path)})
    config = write_config(cfg, tmp_path / "t.yaml")
    out = podium("check", "--config", str(config))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "model.pretrained_remap" in out.stderr and not (tmp_path / "runs" / "t").exists()
    ok_run = podium("check", "--config", str(config), "model.pretrained_remap=true")
    assert ok_run.returncode == 0, ok_run.stderr[-2000:]
    assert "\nrecipe: fine-tuning defaults (" in ok_run.stdout  # said before any training


@pytest.mark.slow  # trains a fold in a subprocess
def test_a_fold_says_and_records_what_its_weights_came_from(tmp_path):
    import yaml

    from podium import artifacts

    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    path = _save_ordered(_foreign(_source()), tmp_path / "foreign.pth")
    cfg = tiny_config(data, tmp_path / "runs", model={"name": NAME, "pretrained_file": str(path),
                                                      "pretrained_remap": True})
    out = podium("train", "--config", str(write_config(cfg, tmp_path / "t.yaml")), "--fold", "0")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    body = len(_source()) - 2
    assert f"model: {NAME}, weights from {path} ({body} of {body + 2} tensors, a new classifier)" in out.stdout
    saved = yaml.safe_load((tmp_path / "runs" / "t" / "fold0" / "config.yaml").read_text())["provenance"]
    assert saved["weights"] == {"source": str(path), "file_hash": artifacts.file_hash(path),
                                "tensors": f"{body}/{body + 2}", "classifier": "new"}


PROBE = """
import sys, torch
from safetensors.torch import load_file
from podium.config.sections import ModelConfig
from podium.train.models import build_model
model, loaded = build_model(ModelConfig(name="test_efficientnet", pretrained=True), 7)
source = load_file(sys.argv[1])
state = model.state_dict()
same = [k for k in state if not k.startswith("classifier") and torch.equal(state[k], source[k])]
print(len(same), len(state), loaded)
"""


def test_hub_weights_load_offline_from_the_cache_and_are_refused_when_not_cached(tmp_path):
    source = _source()
    home = tmp_path / "hf"
    snapshot = write_hub_cache(home, "timm/test_efficientnet.r160_in1k", source)
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(snapshot)], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    same, total, said = out.stdout.split(" ", 2)
    assert (int(same), int(total)) == (len(source) - 2, len(source))  # every tensor but the new head
    assert said.strip() == (f"weights from the hub (timm/test_efficientnet.r160_in1k) ({len(source) - 2} of "
                            f"{len(source)} tensors, a new classifier)")

    data, _ = write_competition(tmp_path / "comp", n_train=30, n_test=6)
    cfg = tiny_config(data, tmp_path / "runs", model={"name": NAME, "pretrained": True})
    config = write_config(cfg, tmp_path / "t.yaml")
    assert podium("check", "--config", str(config), env=env).returncode == 0
    empty = podium("check", "--config", str(config), env={**env, "HF_HOME": str(tmp_path / "empty")})
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1, empty.stderr
    for part in ("model.pretrained", "timm/test_efficientnet.r160_in1k", str(tmp_path / "empty"),
                 "model.pretrained_file", "fetch it once with network"):
        assert part in empty.stderr, part


def test_pretrained_and_a_file_together_are_a_config_error():
    from podium.config import config_from_dict

    with pytest.raises(PodiumError, match="model.pretrained and model.pretrained_file both name weights"):
        config_from_dict({"model": {"pretrained": True, "pretrained_file": "w.pth"}})
    with pytest.raises(PodiumError, match="pretrained_remap .*needs model.pretrained_file"):
        config_from_dict({"model": {"pretrained_remap": True}})


def test_weights_shipped_in_a_python_package_are_found_without_importing_it(tmp_path, monkeypatch):
    """`package:<name>/<path>` is the file inside the installed package (found by importlib's
    finder, the package's code never run); a package that is not installed is one line naming it."""
    package = tmp_path / "site" / "some_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")  # importing it would fail
    path = _save(_source(), package / "models" / "w.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model, loaded = _build("package:some_weights_pkg/models/w.safetensors")
    assert loaded.source == str(path) and loaded.tensors == len(_source()) - 2
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in _source().items() if k not in classifier_keys(model))
    with pytest.raises(PodiumError, match=r"^config key 'model.pretrained_file': package 'no_such_weights_pkg' is "
                                          r"not installed; pip install"):
        _build("package:no_such_weights_pkg/models/w.pth")
    with pytest.raises(PodiumError, match=r"^config key 'model.pretrained_file': file not found: .*models/x.pth$"):
        _build("package:some_weights_pkg/models/x.pth")


def test_a_new_classifier_starts_at_zero_with_head_init_zero_and_a_loaded_one_is_kept(tmp_path):
    """head_init zero: every first prediction uniform (the loss is ln K, no random logits), the
    pretrained body untouched; a classifier that came from the file is never reset."""
    path = _save(_source(), tmp_path / "w.safetensors")
    x = torch.randn(4, 3, 32, 32)
    zero, _ = _build(path, head_init="zero")
    zero.eval()
    logits = zero(x)
    assert torch.count_nonzero(logits) == 0
    assert torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).item() == \
        pytest.approx(torch.log(torch.tensor(7.0)).item())
    timm_init, _ = _build(path, head_init="timm")
    assert torch.count_nonzero(timm_init.eval()(x)) > 0
    state = zero.state_dict()
    assert all(torch.equal(state[k], v) for k, v in _source().items() if k not in classifier_keys(zero))
    kept, loaded = _build(path, num_outputs=1000, head_init="zero")  # the file's own classes
    assert loaded.classifier == "loaded"
    assert all(torch.equal(kept.state_dict()[k], _source()[k]) for k in classifier_keys(kept))
