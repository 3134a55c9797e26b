"""Decode once: every image decoded a single time, shrunk so its shorter side is the largest
size training needs (aspect kept), and stored in one memory-mapped file shared by all folds,
epochs, loader workers and processes. The OS page cache keeps it in RAM.

The file is named by a hash of the images' content and the size, so a changed image or a larger
schedule builds a new one. JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 scale
(libjpeg's DCT scaling through OpenCV's IMREAD_REDUCED_* flags), which is several times faster
than a full decode.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from podium import artifacts
from podium.data.images import decode_rgb
from podium.errors import PodiumError

VERSION = "1"
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _shorter_side(path: str) -> int | None:
    try:
        with Image.open(path) as im:  # reads the header only
            return min(im.size)
    except Exception:  # noqa: BLE001 -- unknown to PIL: decode in full below
        return None


def decode_for_size(path: str, short_side: int) -> np.ndarray:
    """RGB uint8 with the shorter side reduced to `short_side` (never enlarged)."""
    data = np.fromfile(path, dtype=np.uint8)
    flags = cv2.IMREAD_COLOR
    src = _shorter_side(path)
    if src is not None:
        for factor, reduced in _REDUCED:
            if src // factor >= short_side:
                flags = reduced
                break
    img = decode_rgb(data, flags)
    if img is None:
        raise PodiumError(f"cannot decode image {path}")
    h, w = img.shape[:2]
    if min(h, w) > short_side:
        scale = short_side / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


class ImageCache:
    """Read-only view of a cache file: `get(path)` returns the decoded, shrunk RGB array."""

    def __init__(self, bin_path: Path, index: dict):
        self.bin_path = Path(bin_path)
        self.slots = {p: (off, tuple(shape)) for p, off, shape in index["images"]}
        self._data = None  # opened lazily, in each worker after the fork

    def __contains__(self, path: str) -> bool:
        return path in self.slots

    def get(self, path: str) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.bin_path, dtype=np.uint8, mode="r")
        off, shape = self.slots[path]
        n = shape[0] * shape[1] * shape[2]
        return np.array(self._data[off:off + n]).reshape(shape)  # a copy: augmentations write in place

    def __getstate__(self):  # workers reopen the map themselves
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    @staticmethod
    def open(folder: Path, key: str) -> ImageCache | None:
        index_path, bin_path = folder / f"{key}.json", folder / f"{key}.bin"
        if not (index_path.is_file() and bin_path.is_file()):
            return None
        index = json.loads(index_path.read_text())
        if index.get("bytes") != bin_path.stat().st_size:
            return None
        return ImageCache(bin_path, index)


def cache_key(content_hash: str, short_side: int) -> str:
    return artifacts.text_hash(VERSION, content_hash, str(short_side))[:20]


def build_cache(paths: list[str], short_side: int, folder: Path, key: str, workers: int = 8) -> ImageCache:
    """Decode every image once into `folder/<key>.bin`; the index `<key>.json` is written last,
    so a cache interrupted while being built is never used."""
    existing = ImageCache.open(folder, key)
    if existing is not None and all(p in existing for p in paths):
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    bin_path = folder / f"{key}.bin"
    # A name of its own: folds launched side by side (make -j cv) may build at the same time.
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    tmp = Path(tmp_name)
    entries, offset = [], 0
    try:
        with os.fdopen(fd, "wb") as fh, ThreadPoolExecutor(max_workers=workers) as pool:
            # decode in parallel (OpenCV releases the GIL), write in order
            for path, img in zip(paths, pool.map(lambda p: decode_for_size(p, short_side), paths), strict=True):
                fh.write(img.tobytes())
                entries.append([path, offset, list(img.shape)])
                offset += img.nbytes
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, bin_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PodiumError(f"cannot write the image cache {bin_path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    index = {"version": VERSION, "short_side": short_side, "bytes": offset, "images": entries}
    # The folder is shared by every experiment on these runs (runs.image_cache_dir): caches of
    # other data or sizes stay, as another experiment may be using them.
    artifacts.write_json(folder / f"{key}.json", index)
    return ImageCache(bin_path, index)
