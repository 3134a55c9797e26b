"""Test-time augmentation: the views against torch's and torchvision's own operations, and the
prediction averaged over them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import five_crop

from podium.config import config_from_dict
from podium.config.sections import PredictConfig
from podium.errors import PodiumError
from podium.predict import tta
from podium.predict.forward import forward_views, probabilities

from conftest import tiny_config


def _d4(x):
    """The eight symmetries of the square, enumerated independently: four rotations of x and of its mirror."""
    return [torch.rot90(y, k, dims=(-2, -1)) for y in (x, x.flip(-1)) for k in range(4)]


def _same_set(got, want):
    assert len(got) == len(want)
    for g in got:
        assert sum(torch.equal(g, w) for w in want) == 1  # each view once, and nothing else


def test_hflip_vflip_transpose_are_the_eight_symmetries_of_the_square():
    x = torch.randn(2, 3, 9, 9)
    views = tta.views(PredictConfig(tta=["hflip", "vflip", "transpose"]))
    assert len(views) == 8 and views[0] == tta.PLAIN and len(set(views)) == 8
    _same_set([v.apply(x) for v in views], _d4(x))


def test_scales_and_five_crop_are_torchs_resize_and_torchvisions_crops():
    x = torch.randn(1, 3, 32, 32)
    views = tta.views(PredictConfig(tta=["hflip", "five_crop"], tta_scales=[1.15, 1.0]))
    assert len(views) == 2 * (2 + 5) and views[0] == tta.PLAIN
    scaled = [v for v in views if v.scale == 1.15 and not v.hflip][0].apply(x)
    assert scaled.shape[-2:] == (37, 37)
    np.testing.assert_allclose(scaled, F.interpolate(x, size=(37, 37), mode="bilinear", align_corners=False))
    big = F.interpolate(x, size=(37, 37), mode="bilinear", align_corners=False)  # 32 / 0.875 = 36.6
    crops = [v.apply(x) for v in views if v.crop is not None and not v.hflip]
    _same_set(crops, list(five_crop(big, [32, 32])))
    flipped = [v.apply(x) for v in views if v.crop is not None and v.hflip]
    _same_set(flipped, [c.flip(-1) for c in five_crop(big, [32, 32])])


def test_the_shorthand_and_the_list_name_the_same_views():
    assert tta.views(PredictConfig(tta_hflip=True)) == tta.views(PredictConfig(tta=["hflip"]))
    assert tta.views(PredictConfig(tta_hflip=True, tta=["hflip", "vflip"])) == tta.views(
        PredictConfig(tta=["vflip", "hflip"]))
    assert tta.views(PredictConfig()) == (tta.PLAIN,)
    assert set(tta.NAMES) == set(PredictConfig.model_fields["tta"].annotation.__args__[0].__args__)


@pytest.mark.parametrize("predict,message", [({"tta_scales": [1.15]}, "predict.tta_scales"),
                                             ({"tta_scales": [1.0, 1.0]}, "predict.tta_scales"),
                                             ({"tta": ["hflip", "hflip"]}, "predict.tta"),
                                             ({"tta": ["rotate"]}, "predict.tta")])
def test_bad_tta_is_refused_naming_the_key(tmp_path, predict, message):
    tree = tiny_config(tmp_path, tmp_path / "runs").model_dump(mode="json")
    tree["predict"] |= predict
    with pytest.raises(PodiumError, match=f"config key '{message}") as info:
        config_from_dict(tree)
    assert "\n" not in str(info.value)


def test_forward_averages_the_views_and_keeps_the_plain_logits():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 5)).eval()
    x = torch.randn(6, 3, 12, 12)
    views = tta.views(PredictConfig(tta=["hflip", "transpose"], tta_scales=[1.0, 1.5]))
    with torch.no_grad():
        logits, probs = forward_views(model, x, "multiclass", views)
        want = [probabilities(model(y), "multiclass") for y in _d4_part(x)]
    assert probs.shape == (8, 6, 5)
    torch.testing.assert_close(logits, model(x).detach())
    torch.testing.assert_close(probs[0], want[0])
    torch.testing.assert_close(probs.mean(dim=0), torch.stack(want).mean(dim=0))
    with pytest.raises(ValueError, match="plain"):
        forward_views(model, x, "multiclass", views[1:])


def _d4_part(x):
    """x, its mirror, its transpose and both, at scale 1 and 1.5 (torch's own resize)."""
    out = []
    for y in (x, F.interpolate(x, size=(18, 18), mode="bilinear", align_corners=False)):
        out += [y, y.flip(-1), y.transpose(-2, -1), y.flip(-1).transpose(-2, -1)]
    return out
