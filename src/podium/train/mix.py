"""Mixup and CutMix on a batch already on the device, as one formula.

Both take a "partner" image x[pi] for every sample (pi a random permutation of the batch) and a
mask M of how much of each pixel comes from the partner:

    x~ = (1 - M) * x + M * x[pi]        y~ = (1 - w) * y + w * y[pi],   w = mean of M over pixels

Mixup:  lambda ~ Beta(a, a), M = 1 - lambda everywhere, so w = 1 - lambda.
CutMix: lambda ~ Beta(a, a), M = 1 inside a box of sides sqrt(1 - lambda) * H by
        sqrt(1 - lambda) * W at a uniform centre, clipped to the image; w is the box's clipped
        area over the image area, i.e. exactly the fraction of pixels taken from the partner.

Written here rather than taken from timm because the spec needs odd batch sizes, a batch of
one, multilabel and binary targets, and a per-sample mode, all from one seeded generator.
"""

from __future__ import annotations

import numpy as np
import torch

from podium.config.sections import MixConfig


def mixing_on(cfg: MixConfig, epoch: int, epochs: int) -> bool:
    """Whether this epoch mixes at all: some alpha on, and not in the last off_epochs."""
    return (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0) and cfg.prob > 0 and epoch < epochs - cfg.off_epochs


def _cutmix_box(lam: float, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(round(h * ratio)), int(round(w * ratio))
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    y1, y2 = np.clip(cy - cut_h // 2, 0, h), np.clip(cy - cut_h // 2 + cut_h, 0, h)
    x1, x2 = np.clip(cx - cut_w // 2, 0, w), np.clip(cx - cut_w // 2 + cut_w, 0, w)
    return int(y1), int(y2), int(x1), int(x2)


def _draw(cfg: MixConfig, rng: np.random.Generator, h: int, w: int) -> tuple[str, float, tuple | None]:
    """One mixing decision: ('none' | 'mixup' | 'cutmix', lambda, box)."""
    if rng.random() >= cfg.prob:
        return "none", 1.0, None
    use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha <= 0 or rng.random() < cfg.switch_prob)
    if use_cutmix:
        lam = float(rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha))
        return "cutmix", lam, _cutmix_box(lam, h, w, rng)
    return "mixup", float(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha)), None


def draw_mixing(cfg: MixConfig, n: int, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """The random part, on the CPU from one seeded generator: the partner permutation and one
    (kind, lambda, box) per sample (the same one for every sample in mode batch)."""
    pi = rng.permutation(n)
    if cfg.mode == "batch":
        return pi, [_draw(cfg, rng, h, w)] * n
    return pi, [_draw(cfg, rng, h, w) for _ in range(n)]


def _one_mask(draw: tuple, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    kind, lam, box = draw
    mask = torch.zeros((1, h, w), dtype=dtype)
    if kind == "mixup":
        mask.fill_(1.0 - lam)
    elif kind == "cutmix":
        y1, y2, x1, x2 = box
        mask[:, y1:y2, x1:x2] = 1.0
    return mask


def partner_mask(draws: list, h: int, w: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """M, shape (n, 1, h, w): the fraction of each pixel that comes from the partner.

    Built on the CPU and moved in one copy; one draw shared by the batch is built once and
    broadcast (a view), not filled n times.
    """
    if all(d is draws[0] for d in draws):
        return _one_mask(draws[0], h, w, dtype).to(device).expand(len(draws), 1, h, w)
    return torch.stack([_one_mask(d, h, w, dtype) for d in draws]).to(device)


def mix(images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, cfg: MixConfig):
    """Mix a batch (N, C, H, W) and its soft targets (N, K) with one draw per batch (mode batch)
    or per sample (mode elem). Returns (images, targets, w: the partner's weight per sample)."""
    n, _, h, w = images.shape
    pi, draws = draw_mixing(cfg, n, h, w, rng)
    m = partner_mask(draws, h, w, images.device, images.dtype)
    perm = torch.from_numpy(pi).to(images.device)
    mixed = images * (1 - m) + images[perm] * m
    if images.is_contiguous(memory_format=torch.channels_last):
        mixed = mixed.contiguous(memory_format=torch.channels_last)
    weight = m.float().mean(dim=(1, 2, 3))
    wt = weight.to(targets.dtype).unsqueeze(1)
    return mixed, targets * (1 - wt) + targets[perm] * wt, weight
