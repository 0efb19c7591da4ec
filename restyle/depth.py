"""Monocular depth (DPT) around an ONNX graph whose output is already min-max normalised.

The graph (see export/vision.py) takes `pixel_values` [batch,3,S,S] and returns `depth`
[batch,S,S], each map in [0,1], near = 1 (DPT predicts relative inverse depth), which is
what the depth ControlNet expects as its conditioning image.
"""
from __future__ import annotations

import cv2
import numpy as np

# DPTImageProcessor's defaults for Intel/dpt-large (not the 0.485/0.229 ImageNet stats).
DPT_MEAN = np.array([0.5, 0.5, 0.5], np.float32)
DPT_STD = np.array([0.5, 0.5, 0.5], np.float32)


def prepare(img: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 HxWx3 -> pixel_values float32 [1,3,S,S] (square resize, like DPT's processor)."""
    resized = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    norm = (resized - DPT_MEAN) / DPT_STD
    return np.ascontiguousarray(norm.transpose(2, 0, 1)[None], dtype=np.float32)


def to_map(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Normalised depth [1,S,S] (or [S,S]) -> uint8 [H,W] at the working resolution."""
    d = np.asarray(depth, np.float32).reshape(depth.shape[-2:])
    d = np.nan_to_num(d, nan=0.0, posinf=1.0, neginf=0.0)
    d = cv2.resize(d, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    return (np.clip(d, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
