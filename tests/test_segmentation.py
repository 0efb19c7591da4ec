
import numpy as np
import pytest
import torch

from export.vision import build_segmentation
from restyle.segmentation import SAM2_TINY_CONFIG, Segmenter


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    return out, build_segmentation(out, weights=None, size="tiny", seed=0)


@pytest.fixture(scope="module")
def segmenter(built):
    out, manifest = built
    return Segmenter(out / manifest["file"], manifest["config"], "cpu")


@pytest.fixture(scope="module")
def image():
    img = np.full((96, 128, 3), 180, np.uint8)
    img[30:80, 20:60] = (120, 60, 30)
    return img


def test_checkpoint_format(built):
    out, manifest = built
    assert manifest["config"] == SAM2_TINY_CONFIG and manifest["file"] == "segmentation/sam2.pt"
    ckpt = torch.load(out / "segmentation" / "sam2.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model"} and any(k.startswith("image_encoder.") for k in ckpt["model"])


def test_segment_boxes(segmenter, image):
    boxes = np.array([[20, 30, 60, 80], [70, 10, 120, 90]], np.float32)
    masks, furniture_mask = segmenter.segment(image, boxes, np.array([True, False]))
    assert masks.shape == (2, 96, 128) and masks.dtype == bool
    assert furniture_mask.shape == (96, 128) and furniture_mask.dtype == np.uint8
    assert set(np.unique(furniture_mask)) <= {0, 255}
    np.testing.assert_array_equal(furniture_mask > 0, masks[0])  # only the first box is furniture


def test_single_box_and_no_furniture(segmenter, image):
    masks, furniture_mask = segmenter.segment(image, np.array([[20, 30, 60, 80]], np.float32), np.array([False]))
    assert masks.shape == (1, 96, 128)
    assert not furniture_mask.any()


def test_no_boxes(segmenter, image):
    masks, furniture_mask = segmenter.segment(image, np.zeros((0, 4), np.float32), np.zeros(0, bool))
    assert masks.shape == (0, 96, 128) and masks.dtype == bool
    assert furniture_mask.shape == (96, 128) and not furniture_mask.any()


def test_mismatched_flags(segmenter, image):
    with pytest.raises(ValueError, match="furniture flags"):
        segmenter.segment(image, np.zeros((2, 4), np.float32), np.zeros(1, bool))
