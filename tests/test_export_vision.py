"""The builders' manifests, and the with-weights paths fed from a local folder.

The 'weights' folders here are tiny random checkpoints saved in the released formats, so
the same loading code that reads real checkpoints is exercised offline.
"""
import numpy as np
import pytest
import torch

from export import vision
from restyle.detection import letterbox
from restyle.onnx_model import OnnxModel
from restyle.room_classification import RoomClassifier


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    (root / "yolo").mkdir()
    vision.load_yolo(weights=None, seed=11).save(str(root / "yolo" / "yolov8n.pt"))
    dpt, _ = vision.load_depth(weights=None, size="tiny", seed=11)
    dpt.dpt.save_pretrained(root / "dpt-large")
    scratch = tmp_path_factory.mktemp("scratch")
    vision.build_segmentation(scratch, weights=None, size="tiny", seed=11)
    (root / "sam2").mkdir()
    (scratch / "segmentation" / "sam2.pt").rename(root / "sam2" / "sam2.1_hiera_tiny.pt")
    vision.build_room_classifier(scratch, weights=None, size="tiny", seed=11)
    (scratch / "room_classifier").rename(root / "clip-vit-base-patch32")
    return root


def test_invalid_size_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="'tiny' or 'full'"):
        vision.build_detection(tmp_path, weights=None, size="huge", seed=0)
    with pytest.raises(FileNotFoundError, match="weights layout"):
        vision.build_segmentation(tmp_path, weights=tmp_path, size="tiny", seed=0)
    with pytest.raises(FileNotFoundError, match="weights layout"):
        vision.build_room_classifier(tmp_path, weights=tmp_path, size="tiny", seed=0)


def test_detection_from_weights(weights, tmp_path):
    entry = vision.build_detection(tmp_path, weights=weights, size="tiny", seed=0)
    assert entry["source"] == str(weights / "yolo" / "yolov8n.pt") and entry["seed"] is None
    assert sorted(p.name for p in (weights / "yolo").iterdir()) == ["yolov8n.pt"]  # nothing written there
    rng = np.random.default_rng(0)
    x = np.concatenate([letterbox(rng.integers(0, 256, (100, 120, 3), np.uint8), 320)[0] for _ in range(2)])
    net = vision.load_yolo(weights=None, seed=11).model.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(x))[0].numpy()
    got = OnnxModel(tmp_path / "detection" / "model.onnx")(images=x)["output0"]  # a batch of 2
    assert got.shape == expected.shape == (2, 84, 2100)
    assert np.abs(got - expected).max() < 1e-3  # the checkpoint's weights, not new random ones


def test_depth_from_weights(weights, tmp_path):
    entry = vision.build_depth(tmp_path, weights=weights, size="tiny", seed=0)
    assert entry["image_size"] == 96 and entry["source"] == str(weights / "dpt-large")
    x = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)  # a batch of 2
    ref, _ = vision.load_depth(weights=None, size="tiny", seed=11)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    got = OnnxModel(tmp_path / "depth" / "model.onnx")(pixel_values=x)["depth"]
    assert got.shape == expected.shape == (2, 96, 96)
    assert np.abs(got - expected).max() < 1e-4


def test_segmentation_from_weights_is_linked_not_rebuilt(weights, tmp_path):
    entry = vision.build_segmentation(tmp_path, weights=weights, size="tiny", seed=0)
    placed = tmp_path / "segmentation" / "sam2.pt"
    assert placed.read_bytes() == (weights / "sam2" / "sam2.1_hiera_tiny.pt").read_bytes()
    assert entry["config"] == "configs/sam2.1/sam2.1_hiera_t.yaml" and entry["seed"] is None


def test_room_classifier_from_weights(weights, tmp_path):
    entry = vision.build_room_classifier(tmp_path, weights=weights, size="tiny", seed=0)
    assert entry["dir"] == "room_classifier" and entry["source"] == str(weights / "clip-vit-base-patch32")
    pred = RoomClassifier(tmp_path / "room_classifier", "cpu", torch.float32).classify(
        np.zeros((64, 64, 3), np.uint8))
    assert 0.0 <= pred.confidence <= 1.0


def test_manifest_entries(tmp_path):
    seg = vision.build_segmentation(tmp_path, weights=None, size="tiny", seed=5)
    clip = vision.build_room_classifier(tmp_path, weights=None, size="tiny", seed=5)
    for entry in (seg, clip):
        assert {"architecture", "source", "seed"} <= set(entry) and entry["seed"] == 5
    assert seg["source"].startswith("random:") and len(seg["sha256"]) == 64
    assert clip["image_size"] == 32 and clip["vocab_size"] == 514
    again = vision.build_segmentation(tmp_path / "again", weights=None, size="tiny", seed=5)
    assert again["sha256"] == seg["sha256"]  # torch.save of a seeded build is reproducible


def test_full_size_configs_match_released_architectures():
    dpt = vision.dpt_config("full")
    assert (dpt.hidden_size, dpt.num_hidden_layers, dpt.image_size) == (1024, 24, 384)
    clip = vision.clip_config("full", vocab_size=514, eos_id=513, bos_id=512)
    assert (clip.vision_config.hidden_size, clip.vision_config.patch_size, clip.vision_config.image_size) == (768, 32, 224)
    assert clip.text_config.hidden_size == 512 and clip.projection_dim == 512
