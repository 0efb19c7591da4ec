"""Upload checks and preparation: type by content, size, pixel count, then decode + downsize.

The cheap checks run before restyle.imaging.decode_image so the status code can tell the
client exactly what is wrong (415 type, 413 bytes or pixels, 422 anything else).
"""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps

from .errors import AppError

MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


def sniff(data: bytes) -> str | None:
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def header_pixels(data: bytes) -> int | None:
    """Width*height from the header only (PIL reads it lazily: nothing is decoded here)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            return w * h
    except Image.DecompressionBombError:
        return 1 << 62
    except Exception:
        return None  # let decode_image name the problem


def downsize(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)  # exact aspect; the pipeline rounds later


def prepare(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int) -> bytes:
    """Validated, EXIF-oriented, downsized JPEG of an upload, or AppError naming the problem."""
    from restyle.imaging import ImageError, decode_image, encode_jpeg

    if not data:
        raise AppError(422, "empty_file", "the uploaded file is empty")
    if len(data) > max_bytes:
        raise AppError(413, "file_too_large", f"the file is larger than {max_bytes} bytes")
    if sniff(data) is None:
        raise AppError(415, "unsupported_media_type", "the file is not a JPEG, PNG or WebP image")
    pixels = header_pixels(data)
    if pixels is not None and pixels > max_pixels:
        raise AppError(413, "too_many_pixels",
                       f"the image has more than {max_pixels} pixels; send a smaller image")
    try:
        img = decode_image(data, max_pixels=max_pixels)
    except ImageError as e:
        raise AppError(422, "invalid_image", str(e)) from None
    return encode_jpeg(downsize(img, max_side), quality=92)


def thumbnail(jpeg: bytes, size: int = 400) -> bytes:
    """A size×size center crop of the result, for galleries."""
    with Image.open(io.BytesIO(jpeg)) as im:
        thumb = ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()
