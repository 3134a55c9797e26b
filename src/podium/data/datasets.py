"""Datasets and albumentations pipelines.

Workers ship uint8 images; `Normalize` turns them into the model's float input on the device.
A quarter of float32's bytes cross the worker queues, the pinned-memory copy and the
host-to-device transfer, and the workers skip the arithmetic.

The epoch and the image size live in a small shared-memory tensor that every loader worker
reads at each sample. Persistent workers keep their copy of the dataset across epochs, so a
plain attribute set in the main process would never reach them; shared memory does.
Augmentation randomness is seeded per sample from (seed, epoch, row), so it is the same for any
number of workers or processes, and different in every epoch.
"""

from __future__ import annotations

import inspect

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset, Sampler

from podium.config.sections import AugmentConfig
from podium.data.images import read_rgb
from podium.errors import PodiumError


def build_transform(steps: list[dict], size: int, key: str) -> A.Compose:
    """An albumentations pipeline from config steps; size-taking steps get `size` unless set.
    It ends in a uint8 CHW tensor: normalization happens on the device (`Normalize`)."""
    ops = []
    for i, step in enumerate(steps):
        kwargs = {k: v for k, v in step.items() if k != "name"}
        cls = getattr(A, step["name"], None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise PodiumError(f"config key '{key}[{i}]': albumentations has no transform '{step['name']}'")
        if cls in (A.Normalize, A.ToFloat):
            raise PodiumError(f"config key '{key}[{i}]': leave out {step['name']}; podium normalizes on the device "
                              "with augment.mean and augment.std")
        params = inspect.signature(cls.__init__).parameters
        if "size" in params and "size" not in kwargs:
            kwargs["size"] = (size, size)
        if "height" in params and "width" in params and "height" not in kwargs and "width" not in kwargs:
            kwargs["height"] = kwargs["width"] = size
        for name in ("size", "scale", "ratio"):
            if isinstance(kwargs.get(name), list):  # YAML lists where albumentations wants tuples
                kwargs[name] = tuple(kwargs[name])
        try:
            ops.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise PodiumError(f"config key '{key}[{i}]' ({step['name']}): {str(exc).splitlines()[0]}") from None
    ops.append(ToTensorV2())
    return A.Compose(ops)


def check_transforms(aug: AugmentConfig, size: int) -> None:
    """Build both pipelines and run them on odd-shaped images: each must give uint8 3 x size x size."""
    for key, steps in (("augment.train", aug.train), ("augment.valid", aug.valid)):
        tf = build_transform(steps, size, key)
        for shape in ((size + 13, size * 2 + 7, 3), (max(8, size // 2), size + 5, 3)):
            out = tf(image=np.zeros(shape, np.uint8))["image"]
            if out.dtype != torch.uint8:
                raise PodiumError(f"config key '{key}': the pipeline gives {out.dtype} images, not uint8; podium "
                                  "normalizes on the device, so leave out steps that convert to float")
            if tuple(out.shape) != (3, size, size):
                raise PodiumError(
                    f"config key '{key}': the pipeline gives images of shape {tuple(out.shape)}, "
                    f"not 3x{size}x{size}; add a step that sets the size (Resize, RandomResizedCrop, ...)"
                )


class Normalize:
    """uint8 image batches (N, 3, H, W) to the model's float input, on their device:
    (x / 255 - mean) / std, as albumentations' Normalize computes it (tested against it)."""

    def __init__(self, mean, std, device, *, channels_last: bool = False):
        mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std), mean / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = images.to(self.scale.device, non_blocking=True).float() * self.scale - self.shift
        return out.contiguous(memory_format=self.memory_format)


class LoaderState:
    """(epoch, image size) in shared memory: written by the main loop, read by every worker."""

    def __init__(self, size: int):
        self._t = torch.tensor([0, size], dtype=torch.int64).share_memory_()

    def set(self, epoch: int, size: int) -> None:
        self._t[0], self._t[1] = epoch, size

    @property
    def epoch(self) -> int:
        return int(self._t[0])

    @property
    def size(self) -> int:
        return int(self._t[1])


class ImageDataset(Dataset):
    """Returns (uint8 image tensor, features, target, row index). The row index travels with the batch so
    that predictions gathered from several processes are written by id, never by position. `features`:
    the row's encoded metadata (data.features), float32 of shape (F,); of shape (0,) without any."""

    def __init__(self, paths, targets, steps: list[dict], size: LoaderState | int,
                 seed: int, key: str, *, augment_seed: bool, cache=None, features: np.ndarray | None = None):
        self.paths = [str(p) for p in paths]
        self.targets = targets
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)) \
            if features is not None else torch.zeros((len(self.paths), 0))
        if len(self.features) != len(self.paths):
            raise ValueError(f"{len(self.features)} feature rows for {len(self.paths)} images")
        self.steps, self.key = steps, key
        self.size = size  # a fixed size, or the LoaderState that says the epoch's size
        self.seed = seed
        self.augment_seed = augment_seed
        self.cache = cache  # an ImageCache of decoded images, or None to decode every time
        self._pipelines: dict[int, A.Compose] = {}  # per size, built lazily in each worker

    def __len__(self) -> int:
        return len(self.paths)

    def pipeline(self, size: int) -> A.Compose:
        if size not in self._pipelines:
            self._pipelines[size] = build_transform(self.steps, size, self.key)
        return self._pipelines[size]

    def __getitem__(self, i: int):
        path = self.paths[i]
        image = self.cache.get(path) if self.cache is not None else read_rgb(path)
        fixed = isinstance(self.size, int)
        tf = self.pipeline(self.size if fixed else self.size.size)
        if self.augment_seed:
            ss = np.random.SeedSequence([self.seed, 0 if fixed else self.size.epoch, i])
            tf.set_random_seed(int(ss.generate_state(1)[0]))
        x = tf(image=image)["image"]
        y = self.targets[i] if self.targets is not None else 0
        return x, self.features[i], y, i


def class_index(targets: np.ndarray, task: str) -> np.ndarray:
    """Each training row's class (multiclass, binary): its label, or the most likely class of a
    soft target row (a teacher's: distillation, pseudo-labels)."""
    y = np.asarray(targets)
    if task == "binary":
        return (y.reshape(len(y), -1)[:, 0] >= 0.5).astype(np.int64)
    return (y.argmax(axis=1) if y.ndim == 2 else y).astype(np.int64)


class EpochSampler(Sampler[int]):
    """A training order that is a function of (seed, epoch) alone (`set_epoch`, called by the loop
    before each epoch): every process draws the same order and Accelerate shards its batches, and
    a resumed run draws what the uninterrupted one did. Each epoch has one draw per row. Row i takes
    part in the epochs before `until[i]` (data.extra's `epochs`; inf: every epoch)."""

    def __init__(self, until: np.ndarray, seed: int):
        self.until, self.seed, self.epoch = np.asarray(until, dtype=np.float64), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.until)

    def taking_part(self) -> np.ndarray:
        return self.until > self.epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))


class PhasedShuffle(EpochSampler):
    """The shuffled order when some rows train for the first epochs only: a permutation of the rows
    still taking part, then another, cut at the number of rows, so every epoch has the same number
    of updates (the lr schedule counts on it) and a row that has left is replaced by the others
    drawn again."""

    def __iter__(self):
        gen = self.generator()
        rows = torch.from_numpy(np.flatnonzero(self.taking_part()))
        order = []
        while len(order) < len(self):
            order += rows[torch.randperm(len(rows), generator=gen)].tolist()
        yield from order[:len(self)]


class BalancedSampler(EpochSampler):
    """`train.sampler: balanced`: as many draws per epoch as there are rows, with replacement, row i
    with probability (1 / count of its class) / (number of classes), so each class is drawn
    equally often in expectation: rare classes repeat, common ones are subsampled."""

    def __init__(self, classes: np.ndarray, seed: int, until: np.ndarray | None = None):
        self.classes = np.asarray(classes, dtype=np.int64)
        super().__init__(np.full(len(self.classes), np.inf) if until is None else until, seed)

    @property
    def weights(self) -> torch.Tensor:
        """Each row's chance this epoch: 1 / (its class's rows taking part), 0 for a row that has left."""
        taking_part = self.taking_part()
        counts = np.bincount(self.classes[taking_part], minlength=self.classes.max() + 1)
        w = np.where(taking_part, 1.0 / np.maximum(counts[self.classes], 1), 0.0)
        return torch.as_tensor(w, dtype=torch.float64)

    def __iter__(self):
        yield from torch.multinomial(self.weights, len(self), replacement=True, generator=self.generator()).tolist()
