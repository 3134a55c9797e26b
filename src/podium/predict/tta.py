"""Test-time augmentation: the views of a batch that a prediction averages over.

`predict.tta` names the geometric views (`hflip`, `vflip`, `transpose`: together the eight
symmetries of the square) and the framing (`five_crop`: the four corners and the centre of the
image enlarged by FIVE_CROP_ZOOM); `predict.tta_scales` adds whole images at other sizes. The
views are every geometric combination times every framing: [hflip, vflip, transpose] gives 8,
with tta_scales [1.0, 1.15] 16. The plain image (no flip, scale 1) is always the first view, so
a prediction with TTA also yields the prediction without it at no extra cost.

The views act on the normalized batch tensor (N, C, H, W), after the validation transforms: a
flip, a transpose or a resize commutes with the per-channel normalization, and the same code
runs in the training loop and in the offline bundle.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a view is applied: make oof counts the views without it
    import torch

GEOMETRIC = ("hflip", "vflip", "transpose")
FRAMING = ("five_crop",)
NAMES = GEOMETRIC + FRAMING
FIVE_CROP_ZOOM = 1 / 0.875  # each crop is 87.5% of the image's side, as timm's default crop_pct
CROPS = ("centre", "top_left", "top_right", "bottom_left", "bottom_right")


@dataclass(frozen=True)
class View:
    hflip: bool = False
    vflip: bool = False
    transpose: bool = False
    scale: float = 1.0
    crop: str | None = None  # one of CROPS, of the image enlarged by FIVE_CROP_ZOOM

    @property
    def name(self) -> str:
        parts = [n for n in GEOMETRIC if getattr(self, n)]
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        if self.crop is not None:
            parts.append(f"crop {self.crop}")
        return " + ".join(parts) or "plain"

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """This view of a batch (N, C, H, W): framing first (at the batch's size), then the flips."""
        h, w = x.shape[-2:]
        if self.scale != 1.0:
            x = _resize(x, round(h * self.scale), round(w * self.scale))
        if self.crop is not None:
            big = _resize(x, round(h * FIVE_CROP_ZOOM), round(w * FIVE_CROP_ZOOM))
            dy, dx = big.shape[-2] - h, big.shape[-1] - w
            if self.crop == "centre":
                top, left = int(round(dy / 2)), int(round(dx / 2))  # as torchvision's center_crop
            else:
                top = 0 if self.crop.startswith("top") else dy
                left = 0 if self.crop.endswith("left") else dx
            x = big[..., top:top + h, left:left + w]
        if self.hflip:
            x = x.flip(-1)
        if self.vflip:
            x = x.flip(-2)
        if self.transpose:
            x = x.transpose(-2, -1)
        return x


PLAIN = View()


def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    import torch.nn.functional as F

    if (h, w) == tuple(x.shape[-2:]):
        return x
    shrinking = h < x.shape[-2] or w < x.shape[-1]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking)


def view_names(tta: list[str], tta_hflip: bool) -> tuple[str, ...]:
    """The TTA names in force: `predict.tta`, with `hflip` added by the `predict.tta_hflip` shorthand."""
    return tuple(tta) + (("hflip",) if tta_hflip and "hflip" not in tta else ())


def views(predict) -> tuple[View, ...]:
    """Every view `predict` (the config's PredictConfig) asks for, the plain one first."""
    names = view_names(predict.tta, predict.tta_hflip)
    geometric = [dict(zip(GEOMETRIC, flags, strict=True)) for flags in
                 itertools.product(*[(False, True) if n in names else (False,) for n in GEOMETRIC])]
    framing = [{"scale": s} for s in sorted(set(predict.tta_scales), key=lambda s: (s != 1.0, s))]
    if "five_crop" in names:
        framing += [{"crop": c} for c in CROPS]
    return tuple(View(**g, **f) for f in framing for g in geometric)
