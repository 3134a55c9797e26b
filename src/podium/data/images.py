"""Image decoding: any JPEG/PNG (grayscale, RGBA, CMYK, palette, 16-bit, EXIF-rotated) to RGB uint8."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from podium.errors import PodiumError

# OpenCV's own thread pool fights the data-loader workers for the same cores.
cv2.setNumThreads(0)


def decode_rgb(data: bytes | np.ndarray, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """Decode image bytes to an HxWx3 RGB uint8 array, or None when they are not an image.

    The format is read from the bytes, not the file name. IMREAD_COLOR turns grayscale, palette,
    CMYK and 16-bit images into 8-bit colour, drops an alpha channel, and applies the EXIF
    orientation tag, so the array is upright as a viewer shows it.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        return None
    img = cv2.imdecode(buf, flags)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 RGB uint8; a clear error naming the file if it can't be."""
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise PodiumError(f"cannot read image {path}: {exc.strerror}") from None
    img = decode_rgb(buf)
    if img is None:
        raise PodiumError(f"cannot decode image {path}")
    return img


def is_decodable(path: str | Path) -> bool:
    """Whether the file decodes as an image (at 1/8 size: libjpeg's DCT scaling makes it cheap)."""
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return False
    return decode_rgb(buf, cv2.IMREAD_REDUCED_COLOR_8) is not None


def thumbnail_jpeg(path: str | Path, side: int = 128) -> bytes:
    """The image shrunk to fit `side` x `side` (never enlarged), as JPEG bytes: for report pages."""
    img = read_rgb(path)
    scale = side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    _, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()
