"""Canny edges: the structure (walls, windows, perspective lines) the canny ControlNet keeps."""
from __future__ import annotations

import cv2
import numpy as np


def canny(img: np.ndarray, low: float = 100, high: float = 200) -> np.ndarray:
    """RGB uint8 HxWx3 (or grey HxW) -> uint8 [H,W] with edges 255, else 0."""
    if not (0 <= low < high <= 1000):
        raise ValueError(f"canny thresholds must satisfy 0 <= low < high <= 1000, got low={low}, high={high}")
    gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return cv2.Canny(np.ascontiguousarray(gray, np.uint8), float(low), float(high))
