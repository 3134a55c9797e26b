"""Finding duplicate images saved again (resized, re-encoded, slightly edited), by a perceptual
hash; the same file is found by its content hash, which the image check already keeps.

The perceptual hash is pHash (Zauner 2010): the image in grey at 32 x 32, its 2-D DCT, and one bit
per coefficient of the 8 x 8 lowest frequencies (the constant term left out of the median): above
or below their median. Resizing, JPEG re-encoding and small changes of brightness move few of
those 64 bits; two different photographs differ in about half. Two images are near-duplicates
when their hashes differ in at most `max_distance` bits (Hamming distance).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from podium.data.images import read_rgb

BITS = 64


def perceptual_hash(path: str | Path) -> tuple[np.uint64, int]:
    """(The image's 64-bit pHash, its shorter side in pixels)."""
    grey = cv2.cvtColor(read_rgb(str(path)), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2)), min(grey.shape)


def perceptual_hashes(paths: list[str | Path], workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(each image's pHash as uint64, each image's shorter side), in the order of `paths`."""
    with ThreadPoolExecutor(workers) as pool:  # decoding and hashing release the GIL
        hashed = list(pool.map(perceptual_hash, paths))
    return (np.array([h for h, _ in hashed], dtype=np.uint64),
            np.array([side for _, side in hashed], dtype=np.int64))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def near_pairs(phashes: np.ndarray, max_distance: int, block: int = 2048) -> list[tuple[int, int, int]]:
    """Every pair (i, j, distance), i < j, whose hashes differ in at most `max_distance` bits: all
    pairs compared, a block of rows at a time (n = 50,000 is 1.25e9 pairs: seconds, not minutes)."""
    out = []
    n = len(phashes)
    for start in range(0, n, block):
        rows = phashes[start:start + block]
        d = hamming(rows[:, None], phashes[None, :])
        i, j = np.nonzero(d <= max_distance)
        i = i + start
        keep = i < j
        out += zip(i[keep].tolist(), j[keep].tolist(), d[i[keep] - start, j[keep]].tolist(), strict=True)
    return out


def connected_groups(n: int, pairs) -> list[list[int]]:
    """The groups of two or more items that `pairs` (i, j, ...) join, directly or through others
    (union-find), each sorted, in the order of their first item."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, *_ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
