import json

import numpy as np
import pytest
import torch

from export.vision import build_room_classifier
from restyle.contract import ROOM_TYPES
from restyle.contract import check_room_type as validate_room_type
from restyle.room_classification import NON_ROOM_LABELS, NOT_A_ROOM, RoomClassifier, RoomPrediction


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip")
    return out, build_room_classifier(out, weights=None, size="tiny", seed=0)


@pytest.fixture(scope="module")
def classifier(built):
    out, manifest = built
    return RoomClassifier(out / manifest["dir"], "cpu", torch.float32)


def _photo(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), np.uint8)


def test_room_types():
    assert {"living room", "bedroom", "kitchen", "bathroom", "dining room", "home office"} <= set(ROOM_TYPES)
    assert NOT_A_ROOM not in ROOM_TYPES


def test_saved_folder_is_a_clip_model_and_processor(built):
    out, manifest = built
    folder = out / "room_classifier"
    config = json.loads((folder / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == manifest["vocab_size"] == 514
    assert config["vision_config"]["image_size"] == manifest["image_size"] == 32
    assert (folder / "model.safetensors").exists()
    assert (folder / "processor_config.json").exists() or (folder / "preprocessor_config.json").exists()


def test_classify_returns_a_room_with_confidence(classifier):
    pred = classifier.classify(_photo())
    assert isinstance(pred, RoomPrediction)
    assert pred.room_type in ROOM_TYPES + [NOT_A_ROOM]
    assert 0.0 <= pred.confidence <= 1.0
    assert pred.is_room == (pred.room_type != NOT_A_ROOM)
    assert classifier.classify(_photo()) == pred  # deterministic


def test_photo_closest_to_a_non_room_label_is_not_a_room(built):
    out, _ = built
    clf = RoomClassifier(out / "room_classifier", "cpu", torch.float32)
    img = _photo(1)
    pixels = clf.processor(images=img, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        emb = clf.model.get_image_features(pixel_values=pixels)
    emb = torch.nn.functional.normalize(getattr(emb, "pooler_output", emb), dim=-1)[0]
    # Make one non-room prompt point exactly at this photo: it must win.
    clf.text_embeds = clf.text_embeds.clone()
    clf.text_embeds[len(ROOM_TYPES) + 2] = emb
    pred = clf.classify(img)
    assert pred == RoomPrediction(NOT_A_ROOM, pred.confidence, False)
    assert 1 / (len(ROOM_TYPES) + len(NON_ROOM_LABELS)) < pred.confidence <= 1.0
    clf.text_embeds[ROOM_TYPES.index("kitchen")] = emb * 1.0
    clf.text_embeds[len(ROOM_TYPES) + 2] = -emb
    assert clf.classify(img).room_type == "kitchen" and clf.classify(img).is_room


def test_validate_room_type():
    assert validate_room_type("  Living_Room ") == "living room"
    with pytest.raises(ValueError, match="unknown room type 'garage'; choose one of: living room"):
        validate_room_type("garage")
