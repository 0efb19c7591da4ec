"""Did the restyle keep the room? A cheap structural check on the generated image.

A restyle should change materials and furniture but keep walls, windows and perspective,
so the result's edges should land near the source's edges (dilated-edge F1) and its
gradients should follow the source's (and the depth map's) discontinuities. Broken
generations (NaN latents decoded to black, a flat colour) are flagged outright.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from restyle.edges import canny

EDGE_TOLERANCE_PX = 2          # edges may move this far and still count as kept
LOW_STRUCTURE_F1 = 0.15
EDGE_WEIGHT = 0.6              # the rest is gradient/depth agreement


@dataclass
class QualityReport:
    score: float
    flags: list[str] = field(default_factory=list)


def assess(source: np.ndarray, result: np.ndarray, source_edges: np.ndarray | None = None,
           depth: np.ndarray | None = None) -> QualityReport:
    flags: list[str] = []
    res = np.asarray(result)
    if np.issubdtype(res.dtype, np.floating):
        if not np.isfinite(res).all():
            flags.append("nan")
        res = np.nan_to_num(res, nan=0.0, posinf=255.0, neginf=0.0)
        res = np.clip(res * 255.0 if res.max() <= 1.0 else res, 0, 255).astype(np.uint8)
    if res.shape[:2] != source.shape[:2]:
        res = cv2.resize(res, (source.shape[1], source.shape[0]), interpolation=cv2.INTER_AREA)

    gray = cv2.cvtColor(res, cv2.COLOR_RGB2GRAY) if res.ndim == 3 else res
    if float(res.std()) < 2.0:
        flags.append("constant")
    if (gray < 8).mean() > 0.98 or (gray > 247).mean() > 0.98:
        flags.append("blank")
    if flags:
        return QualityReport(0.0, flags)

    src_edges = source_edges if source_edges is not None else canny(source)
    f1 = edge_f1(src_edges, canny(res))
    agree = gradient_agreement(source, res)
    if depth is not None:
        agree = 0.5 * agree + 0.5 * _depth_agreement(depth, res)
    score = float(np.clip(EDGE_WEIGHT * f1 + (1 - EDGE_WEIGHT) * agree, 0.0, 1.0))
    if f1 < LOW_STRUCTURE_F1 and src_edges.any():
        flags.append("low_structure")
    return QualityReport(score, flags)


def edge_f1(a: np.ndarray, b: np.ndarray, tolerance: int = EDGE_TOLERANCE_PX) -> float:
    """F1 of two edge maps where an edge counts as matched within `tolerance` pixels."""
    a, b = a > 0, b > 0
    if not a.any() and not b.any():
        return 1.0
    if not a.any() or not b.any():
        return 0.0
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    a_dil = cv2.dilate(a.astype(np.uint8), kernel) > 0
    b_dil = cv2.dilate(b.astype(np.uint8), kernel) > 0
    precision = (b & a_dil).sum() / b.sum()
    recall = (a & b_dil).sum() / a.sum()
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def _grad_mag(gray: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(gray.astype(np.float32), (5, 5), 0)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return 0.0 if denom == 0 else float(np.clip((a * b).sum() / denom, 0.0, 1.0))


def gradient_agreement(source: np.ndarray, result: np.ndarray) -> float:
    """Correlation (clipped to [0,1]) of the gradient magnitudes of two RGB images."""
    to_gray = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.ndim == 3 else im  # noqa: E731
    return _correlation(_grad_mag(to_gray(source)), _grad_mag(to_gray(result)))


def _depth_agreement(depth: np.ndarray, result: np.ndarray) -> float:
    # Depth discontinuities (wall corners, window frames) should still show as edges.
    d = np.asarray(depth, np.float32).reshape(np.asarray(depth).shape[-2:])
    d = np.nan_to_num(d)
    if d.max() > 1.0:
        d = d / 255.0
    d = cv2.resize(d, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(result, cv2.COLOR_RGB2GRAY) if result.ndim == 3 else result
    return _correlation(_grad_mag(d * 255.0), _grad_mag(gray))
