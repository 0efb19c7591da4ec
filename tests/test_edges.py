import numpy as np
import pytest

from restyle.edges import canny


def _square(h=64, w=80):
    img = np.zeros((h, w, 3), np.uint8)
    img[16:48, 20:60] = 255
    return img


def test_edges_follow_the_square_outline():
    e = canny(_square())
    assert e.shape == (64, 80) and e.dtype == np.uint8
    assert set(np.unique(e)) == {0, 255}
    ys, xs = np.nonzero(e)
    assert 15 <= ys.min() <= 17 and 46 <= ys.max() <= 48 and 19 <= xs.min() <= 21 and 58 <= xs.max() <= 60
    assert not e[25:40, 30:50].any()  # flat inside: no edges


def test_grey_input_and_flat_image():
    np.testing.assert_array_equal(canny(_square()[:, :, 0]), canny(_square()))
    assert not canny(np.full((32, 32, 3), 128, np.uint8)).any()


def test_thresholds_change_sensitivity():
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    noisy = np.clip(ramp + np.random.default_rng(0).normal(0, 25, ramp.shape), 0, 255).astype(np.uint8)
    assert (canny(noisy, 10, 30) > 0).sum() > (canny(noisy, 300, 600) > 0).sum()


@pytest.mark.parametrize("low,high", [(200, 100), (100, 100), (-1, 50), (10, 1001)])
def test_invalid_thresholds(low, high):
    with pytest.raises(ValueError, match="0 <= low < high <= 1000"):
        canny(_square(), low, high)
