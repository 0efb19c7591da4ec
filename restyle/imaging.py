"""Decode, validate, resize and encode images at the edge of the pipeline.

Everything downstream assumes RGB uint8 HxWx3 with a sane size, so all the ways an upload
can be wrong are turned into one `ImageError` here, with a message a user can act on.
"""
from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from restyle.contract import MAX_INPUT_PIXELS, MIN_INPUT_SIDE

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")

# Process-wide safety net for any other Image.open in the server: Pillow raises above twice
# this value. decode_image does its own, stricter check from the header.
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
# A truncated upload must be refused, not silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """The uploaded bytes are not a usable photo; the message says why and what to do."""


def decode_image(data: bytes, *, max_pixels: int = MAX_INPUT_PIXELS, min_side: int = MIN_INPUT_SIDE) -> np.ndarray:
    """Decode JPEG/PNG/WebP bytes to RGB uint8 HxWx3 with EXIF orientation applied."""
    if not data:
        raise ImageError("empty upload: send the bytes of a JPEG, PNG or WebP photo")
    try:
        with warnings.catch_warnings():
            # Only the header is read here; the size is judged below against max_pixels.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image has too many pixels ({exc}); resize it below "
                         f"{max_pixels} pixels and upload again") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as exc:
        # ImportError: once ultralytics is imported, its patched Image.open retries unknown
        # bytes through the optional pi-heif plugin, which is not installed (HEIF isn't accepted).
        raise ImageError("not an image: send a JPEG, PNG or WebP photo") from exc
    if im.format not in ACCEPTED_FORMATS:
        raise ImageError(f"unsupported image type {im.format}: send a JPEG, PNG or WebP photo")
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h} = {w * h} pixels, more than the {max_pixels} allowed; "
                         "resize it and upload again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im)
    except Exception as exc:  # Pillow raises OSError, SyntaxError, zlib/struct errors on bad data
        raise ImageError(f"image file is truncated or corrupt ({exc}); upload the complete file") from exc
    if min(im.size) < min_side:
        raise ImageError(f"image is {im.width}x{im.height}; both sides must be at least "
                         f"{min_side} pixels")
    return _to_rgb(im)


def _to_rgb(im: Image.Image) -> np.ndarray:
    # Transparent pixels would turn black with a plain convert; a white backdrop reads as a
    # wall rather than as a dark hole to the depth and edge stages.
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    shrinking = w * h < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def working_size(h: int, w: int, long_side: int, multiple: int) -> tuple[int, int]:
    """(height, width) of an h x w image resized so its long side is `long_side`, keeping the aspect
    ratio, sides multiples of `multiple`."""
    if long_side < multiple or multiple < 1:
        raise ValueError(f"long_side ({long_side}) must be >= multiple ({multiple}) >= 1")
    scale = long_side / max(h, w)

    def snap(v: float) -> int:
        return max(multiple, int(round(v * scale / multiple)) * multiple)

    return snap(h), snap(w)


def fit_to_working(img: np.ndarray, long_side: int, multiple: int) -> np.ndarray:
    """Resize to working_size()."""
    h, w = working_size(*img.shape[:2], long_side, multiple)
    return _resize(img, w, h)


def restore_aspect(img: np.ndarray, orig_hw: tuple[int, int], max_long_side: int) -> np.ndarray:
    """Resize a result back to the original size (capped so its long side <= max_long_side)."""
    oh, ow = orig_hw
    scale = min(1.0, max_long_side / max(oh, ow))
    w, h = max(1, round(ow * scale)), max(1, round(oh * scale))
    if (h, w) == img.shape[:2]:
        return img
    return _resize(img, w, h)


def _bgr(img: np.ndarray) -> np.ndarray:
    # Single-channel maps (depth, edges, masks) are encoded as they are.
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def encode_jpeg(img: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", _bgr(img),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return buf.tobytes()
