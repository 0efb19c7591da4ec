"""Uploads: cheap checks at submit, the decoding in the worker.

A submit must not decode the photo (tens of ms of CPU on the API for a 1 MP JPEG): the type
comes from the content, size and pixel count from the header, and a JPEG that ends where a
complete one ends is stored as sent. Anything else (PNG, WebP, a JPEG with bytes after its
end marker) is decoded at submit, which refuses a truncated file with the reason, and stored
as a JPEG. The worker decodes before calling the pipeline (working_copy): EXIF orientation,
the working size, and a clear "rejected" failure for a file whose body is corrupt.
"""
from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

from restyle.contract import MIN_INPUT_SIDE

from .errors import AppError

MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
ACCEPTED_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}  # what sniff() recognises
JPEG_END = b"\xff\xd9"  # EOI: the last two bytes of a complete JPEG


def sniff(data: bytes) -> str | None:
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check(data: bytes, *, max_bytes: int, max_pixels: int) -> bool:
    """Refuse, from the header and the file's end only, what cannot be a usable photo (AppError
    naming the problem). True: store the bytes as sent; False: store to_jpeg(data) instead."""
    if not data:
        raise AppError(422, "empty_file", "the uploaded file is empty")
    if len(data) > max_bytes:
        raise AppError(413, "file_too_large", f"the file is larger than {max_bytes} bytes")
    if sniff(data) is None:
        raise AppError(415, "unsupported_media_type", "the file is not a JPEG, PNG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header, decodes nothing
                (w, h), fmt = im.size, im.format
    except Image.DecompressionBombError:
        w, h, fmt = max_pixels, 2, None
    except Exception:  # Pillow raises OSError, SyntaxError, struct errors on a bad header
        raise AppError(422, "invalid_image", "the image header is unreadable: the file is truncated, corrupt "
                       "or not a JPEG, PNG or WebP photo; upload the complete file") from None
    if w * h > max_pixels:
        raise AppError(413, "too_many_pixels", f"the image has more than {max_pixels} pixels; send a smaller image")
    if min(w, h) < MIN_INPUT_SIDE:
        raise AppError(422, "invalid_image", f"image is {w}x{h}; both sides must be at least {MIN_INPUT_SIDE} pixels")
    return fmt == "JPEG" and data.endswith(JPEG_END)


def to_jpeg(data: bytes, *, max_pixels: int) -> bytes:
    """The upload decoded (EXIF-oriented) and re-encoded as a JPEG at its own size, or AppError."""
    from restyle.imaging import ImageError, decode_image, encode_jpeg

    try:
        return encode_jpeg(decode_image(data, max_pixels=max_pixels), quality=92)
    except ImageError as e:
        raise AppError(422, "invalid_image", str(e)) from None


def downsize(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)  # exact aspect; the pipeline rounds later


def working_copy(data: bytes, *, max_side: int) -> bytes:
    """The stored original as the pipeline gets it: EXIF-oriented, long side at most max_side,
    JPEG. restyle.imaging.ImageError (saying what is wrong) if it does not decode."""
    from restyle.imaging import decode_image, encode_jpeg

    return encode_jpeg(downsize(decode_image(data), max_side), quality=92)


def thumbnail(jpeg: bytes, size: int = 400) -> bytes:
    """A size×size center crop of the result, for galleries."""
    with Image.open(io.BytesIO(jpeg)) as im:
        thumb = ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=85)
    return out.getvalue()


def map_jpeg(gray: np.ndarray) -> bytes:
    """A pipeline map (uint8 [H, W], e.g. depth with near = 255) as a greyscale JPEG."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(gray, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"could not encode a map of shape {gray.shape}")
    return buf.tobytes()
