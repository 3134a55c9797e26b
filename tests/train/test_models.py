"""Models: timm by name, offline weights from a local file the test writes itself."""

import pytest
import torch
from safetensors.torch import save_file

from podium.config.sections import ModelConfig
from podium.errors import PodiumError
from podium.train.models import create_model


def test_local_weights_file_is_loaded(tmp_path):
    torch.manual_seed(123)
    source = create_model(ModelConfig(name="test_efficientnet"), 1000)
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))

    torch.manual_seed(999)  # a different init, so equality below can only come from the file
    model = create_model(ModelConfig(name="test_efficientnet", pretrained_file=str(weights)), 7)
    loaded, reference = model.state_dict(), source.state_dict()
    backbone = [k for k in reference if not k.startswith("classifier")]
    assert backbone
    for key in backbone:
        assert torch.equal(loaded[key], reference[key]), key
    assert model.get_classifier().out_features == 7  # a new head for this competition's classes

    scratch = create_model(ModelConfig(name="test_efficientnet"), 7)
    assert not all(torch.equal(scratch.state_dict()[k], reference[k]) for k in backbone)


def test_missing_weights_file_and_unknown_model(tmp_path):
    with pytest.raises(PodiumError, match="model.pretrained_file.*nope.safetensors"):
        create_model(ModelConfig(name="test_efficientnet", pretrained_file=str(tmp_path / "nope.safetensors")), 3)
    with pytest.raises(PodiumError, match="model.name"):
        create_model(ModelConfig(name="resnet_nonexistent"), 3)
