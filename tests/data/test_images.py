"""Decoding: every mode becomes upright RGB, whatever the file's suffix says."""

import numpy as np
import pytest
from PIL import Image

from podium.data.images import read_rgb
from podium.errors import PodiumError


@pytest.fixture
def reference():
    """40 wide, 20 high; the left quarter white, a red square at the top right."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255
    a[:5, 30:35] = (255, 0, 0)
    return Image.fromarray(a)


def _check_rgb(img, shape=(20, 40, 3)):
    assert img.dtype == np.uint8 and img.shape == shape


def test_rgb_png_keeps_channel_order(tmp_path, reference):
    reference.save(tmp_path / "a.png")
    img = read_rgb(tmp_path / "a.png")
    _check_rgb(img)
    assert tuple(img[2, 32]) == (255, 0, 0)  # red stays red: no BGR mix-up


def test_grayscale_becomes_three_equal_channels(tmp_path, reference):
    reference.convert("L").save(tmp_path / "g.png")
    img = read_rgb(tmp_path / "g.png")
    _check_rgb(img)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert img[10, 2, 0] == 255 and img[15, 20, 0] == 0


def test_rgba_palette_and_16bit(tmp_path, reference):
    reference.convert("RGBA").save(tmp_path / "rgba.png")
    reference.convert("P").save(tmp_path / "p.png")
    img16 = (np.asarray(reference.convert("L"), np.uint16) * 257)
    Image.fromarray(img16).save(tmp_path / "g16.png")
    for name in ("rgba.png", "p.png", "g16.png"):
        img = read_rgb(tmp_path / name)
        _check_rgb(img)
        assert img[10, 2].min() >= 250 and img[15, 20].max() <= 5, name
    assert tuple(read_rgb(tmp_path / "rgba.png")[2, 32]) == (255, 0, 0)


def test_cmyk_jpeg(tmp_path, reference):
    reference.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_rgb(tmp_path / "c.jpg")
    _check_rgb(img)
    assert img[10, 2].min() > 230 and img[15, 20].max() < 25
    r, g, b = img[2, 32].astype(int)
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("orientation,shape,white_at", [
    (6, (40, 20, 3), (2, 10)),   # rotated 90 degrees clockwise: the white band is now on top
    (8, (40, 20, 3), (37, 10)),  # 90 counter-clockwise: at the bottom
    (3, (20, 40, 3), (10, 37)),  # 180: on the right
])
def test_exif_orientation_is_applied(tmp_path, reference, orientation, shape, white_at):
    exif = reference.getexif()
    exif[0x0112] = orientation
    reference.save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_rgb(tmp_path / "r.jpg")
    assert img.shape == shape
    assert img[white_at].min() > 230


def test_suffix_is_ignored(tmp_path, reference):
    reference.save(tmp_path / "really_a_jpeg.png", format="JPEG", quality=95)
    reference.save(tmp_path / "really_a_png.jpg", format="PNG")
    for name in ("really_a_jpeg.png", "really_a_png.jpg"):
        _check_rgb(read_rgb(tmp_path / name))


def test_undecodable_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(PodiumError, match="bad.jpg"):
        read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(PodiumError, match="missing.png"):
        read_rgb(tmp_path / "missing.png")
