import cv2
import numpy as np

from restyle.edges import canny
from restyle.quality import QualityReport, assess, edge_f1


def _room(seed=0, h=128, w=160):
    """A crude room: back wall, floor line, a window and a sofa block, plus texture."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (200, 190, 170), np.uint8)
    img[int(h * 0.65):] = (120, 90, 60)
    cv2.line(img, (0, 0), (40, 40), (90, 90, 90), 2)
    cv2.line(img, (w - 1, 0), (w - 41, 40), (90, 90, 90), 2)
    x = int(rng.integers(50, 90))
    cv2.rectangle(img, (x, 15), (x + 40, 55), (235, 240, 250), -1)
    cv2.rectangle(img, (20, 70), (80, 100), (60, 60, 140), -1)
    return img


def _restyled(img):
    """Same structure, different finishes: recoloured and slightly softened."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 40) % 180
    return cv2.GaussianBlur(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), (3, 3), 0)


def _unrelated(h=128, w=160):
    img = np.full((h, w, 3), 90, np.uint8)
    for i in range(6):
        cv2.circle(img, (25 + 22 * i, 30 + 13 * i), 12, (250, 40 * i, 20), -1)
    return img


def test_identical_images_score_top():
    room = _room()
    report = assess(room, room)
    assert isinstance(report, QualityReport)
    assert report.score > 0.95 and report.flags == []


def test_ordering_identical_restyled_unrelated():
    room = _room()
    same = assess(room, room).score
    restyled = assess(room, _restyled(room)).score
    unrelated = assess(room, _unrelated())
    assert same >= restyled > unrelated.score
    assert restyled > 0.6
    assert unrelated.score < 0.4 and "low_structure" in unrelated.flags


def test_precomputed_edges_and_depth_are_used():
    room = _room()
    depth = cv2.cvtColor(room, cv2.COLOR_RGB2GRAY).astype(np.float32)[None] / 255.0  # [1,H,W]
    with_depth = assess(room, _restyled(room), canny(room), depth)
    assert 0.0 <= with_depth.score <= 1.0 and with_depth.flags == []
    assert with_depth.score > assess(room, _unrelated(), canny(room), depth).score
    depth_u8 = (depth[0] * 255).astype(np.uint8)  # a uint8 depth map is accepted too
    assert abs(assess(room, room, None, depth_u8).score - assess(room, room, None, depth).score) < 0.02


def test_result_of_another_size_is_compared_at_source_size():
    room = _room()
    big = cv2.resize(room, (320, 256), interpolation=cv2.INTER_CUBIC)
    assert assess(room, big).score > 0.7


def test_broken_outputs_flagged():
    room = _room()
    black = assess(room, np.zeros_like(room))
    assert black.score == 0.0 and {"blank", "constant"} <= set(black.flags)
    grey = assess(room, np.full_like(room, 128))
    assert grey.score == 0.0 and grey.flags == ["constant"]
    nan = np.full(room.shape, np.nan, np.float32)
    report = assess(room, nan)
    assert "nan" in report.flags and report.score == 0.0
    partly = room.astype(np.float32) / 255.0
    partly[0, 0, 0] = np.nan
    assert "nan" in assess(room, partly).flags


def test_edge_f1():
    a = np.zeros((32, 32), np.uint8)
    a[10, 5:25] = 255
    shifted = np.roll(a, 1, axis=0)
    far = np.roll(a, 10, axis=0)
    assert edge_f1(a, a) == 1.0
    assert edge_f1(a, shifted) == 1.0  # within tolerance
    assert edge_f1(a, far) == 0.0
    assert edge_f1(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert edge_f1(a, np.zeros_like(a)) == 0.0
