import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from restyle.imaging import ImageError, decode_image, encode_jpeg, fit_to_working, restore_aspect


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def encode_png(img: np.ndarray) -> bytes:
    return _pil_bytes(Image.fromarray(img), "PNG")


def _noise(h=96, w=128, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries no pixel data (a few dozen bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"this is a text file, not a photo" * 10)


def test_unsupported_type_judged_by_content():
    gif = _pil_bytes(Image.new("RGB", (64, 64), "red"), "GIF")
    with pytest.raises(ImageError, match="unsupported image type GIF"):
        decode_image(gif)


def test_truncated_jpeg():
    data = encode_jpeg(_noise(256, 256))
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) // 2])


def test_one_pixel_image_too_small():
    with pytest.raises(ImageError, match="at least 32"):
        decode_image(_pil_bytes(Image.new("RGB", (1, 1)), "PNG"))


def test_header_claiming_30000_squared_refused_without_allocating():
    data = _png_header_only(30000, 30000)
    assert len(data) < 100
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="too many pixels"):
            decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # 2.7 GB if it had been decoded


def test_max_pixels_checked_from_header():
    data = encode_png(_noise(100, 100))
    with pytest.raises(ImageError, match="10000 pixels, more than the 5000"):
        decode_image(data, max_pixels=5000)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_exif_rotation_applied():
    stored = np.zeros((32, 64, 3), np.uint8)  # 64 wide, 32 tall: left red, right blue
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    img = decode_image(data)
    assert img.shape == (64, 32, 3)
    top, bottom = img[:24].reshape(-1, 3).mean(0), img[40:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60       # left (red) became the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_webp_accepted():
    src = _noise(64, 80)
    img = decode_image(_pil_bytes(Image.fromarray(src), "WEBP", lossless=True))
    np.testing.assert_array_equal(img, src)


def test_png_roundtrip_exact_and_jpeg_close():
    src = _noise(64, 80)
    np.testing.assert_array_equal(decode_image(encode_png(src)), src)
    smooth = np.tile(np.linspace(0, 255, 80, dtype=np.uint8)[None, :, None], (64, 1, 3))
    back = decode_image(encode_jpeg(smooth, quality=95))
    assert back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth).mean() < 2


def test_transparent_png_composited_on_white():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:20, :, :] = (10, 20, 30, 255)
    img = decode_image(_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert img.shape == (40, 40, 3)
    assert tuple(img[0, 0]) == (10, 20, 30)
    assert tuple(img[-1, -1]) == (255, 255, 255)


def test_grey_png_becomes_rgb():
    img = decode_image(_pil_bytes(Image.new("L", (40, 50), 77), "PNG"))
    assert img.shape == (50, 40, 3) and img.dtype == np.uint8 and (img == 77).all()


@pytest.mark.parametrize("hw,long_side,multiple,expected", [
    ((480, 640), 256, 8, (192, 256)),
    ((640, 480), 512, 64, (512, 384)),
    ((600, 360), 256, 8, (256, 152)),
    ((100, 1000), 256, 64, (64, 256)),     # extreme aspect: short side never below `multiple`
    ((50, 50), 512, 64, (512, 512)),       # upscaling
])
def test_fit_to_working(hw, long_side, multiple, expected):
    out = fit_to_working(_noise(*hw), long_side, multiple)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    assert out.shape[0] % multiple == 0 and out.shape[1] % multiple == 0
    src_ratio, out_ratio = hw[1] / hw[0], out.shape[1] / out.shape[0]
    # the aspect is kept up to one `multiple` of rounding on the short side
    assert abs(out_ratio - src_ratio) / src_ratio < multiple / min(expected) + 1e-9


def test_fit_to_working_rejects_bad_arguments():
    with pytest.raises(ValueError):
        fit_to_working(_noise(), 32, 64)


def test_restore_aspect():
    work = _noise(192, 256)
    assert restore_aspect(work, (480, 640), 512).shape == (384, 512, 3)   # capped
    assert restore_aspect(work, (300, 400), 1024).shape == (300, 400, 3)  # original size
    assert restore_aspect(work, (1000, 400), 500).shape == (500, 200, 3)  # portrait
