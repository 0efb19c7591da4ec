import numpy as np
import onnx
import pytest
import torch

from export.vision import build_detection, load_yolo
from restyle.detection import COCO_CLASSES, FURNITURE_CLASSES, LETTERBOX_FILL, Detections, letterbox, postprocess
from restyle.onnx_model import OnnxModel

SEED = 7
CHAIR, PERSON, COUCH = COCO_CLASSES.index("chair"), COCO_CLASSES.index("person"), COCO_CLASSES.index("couch")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("det")
    return out, build_detection(out, weights=None, size="tiny", seed=SEED)


def test_class_lists():
    assert len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80
    assert FURNITURE_CLASSES <= set(COCO_CLASSES)
    assert {"chair", "couch", "bed", "dining table", "tv"} <= FURNITURE_CLASSES
    assert "person" not in FURNITURE_CLASSES


def test_letterbox_geometry():
    img = np.full((100, 200, 3), 200, np.uint8)
    tensor, lb = letterbox(img, 64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    np.testing.assert_allclose(lb, [0.32, 0, 16], rtol=1e-6)
    assert np.allclose(tensor[0, :, :16], LETTERBOX_FILL / 255)    # padding above
    assert np.allclose(tensor[0, :, 16:48], 200 / 255)             # the image
    assert np.allclose(tensor[0, :, 48:], LETTERBOX_FILL / 255)    # padding below


def _raw(rows: list[tuple[tuple[float, float, float, float], int, float]], n_pad: int = 3) -> np.ndarray:
    """Hand-built YOLOv8 output: (x1,y1,x2,y2 in letterbox pixels, class, score) per anchor."""
    raw = np.zeros((1, 84, len(rows) + n_pad), np.float32)
    for i, ((x1, y1, x2, y2), cls, score) in enumerate(rows):
        raw[0, :4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        raw[0, 4 + cls, i] = score
        raw[0, 4 + (cls + 1) % 80, i] = score / 10  # a weaker class on the same anchor
    return raw


def _to_letterbox(box, lb):
    scale, px, py = lb
    return tuple(np.array(box) * scale + [px, py, px, py])


def test_postprocess_nms_is_class_aware_and_boxes_map_back():
    src_hw = (300, 600)
    _, lb = letterbox(np.zeros((*src_hw, 3), np.uint8), 320)
    chair = (100, 50, 200, 250)
    rows = [
        (_to_letterbox(chair, lb), CHAIR, 0.9),
        (_to_letterbox((105, 55, 205, 250), lb), CHAIR, 0.8),   # duplicate chair: suppressed
        (_to_letterbox((102, 50, 200, 245), lb), PERSON, 0.7),  # same place, other class: kept
        (_to_letterbox((400, 100, 550, 280), lb), COUCH, 0.6),
        (_to_letterbox((10, 10, 50, 50), lb), COUCH, 0.1),      # below conf
    ]
    det = postprocess(_raw(rows), lb, src_hw, conf=0.25, iou=0.45)
    assert isinstance(det, Detections) and len(det) == 3
    assert det.names == ["chair", "person", "couch"]
    np.testing.assert_allclose(det.scores, [0.9, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(det.class_ids, [CHAIR, PERSON, COUCH])
    np.testing.assert_array_equal(det.furniture, [True, False, True])
    np.testing.assert_allclose(det.boxes[0], chair, atol=1e-3)
    np.testing.assert_allclose(det.boxes[2], (400, 100, 550, 280), atol=1e-3)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.class_ids.dtype == np.int32

    doubled = postprocess(_raw(rows), lb, src_hw, out_scale=2.0)
    np.testing.assert_allclose(doubled.boxes, det.boxes * 2, atol=1e-3)
    assert len(postprocess(_raw(rows), lb, src_hw, max_det=1)) == 1
    assert len(postprocess(_raw(rows), lb, src_hw, iou=0.99)) == 4  # nothing overlaps that much


def test_postprocess_clips_to_the_image_then_scales():
    _, lb = letterbox(np.zeros((320, 320, 3), np.uint8), 320)
    det = postprocess(_raw([((-20, 300, 100, 400), CHAIR, 0.9)]), lb, (320, 320), out_scale=0.5)
    np.testing.assert_allclose(det.boxes[0], [0, 150, 50, 160], atol=1e-4)


def test_postprocess_empty_and_bad_shape():
    _, lb = letterbox(np.zeros((64, 64, 3), np.uint8), 64)
    det = postprocess(np.zeros((1, 84, 10), np.float32), lb, (64, 64))
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.furniture.shape == (0,)
    with pytest.raises(ValueError, match="expected raw detections"):
        postprocess(np.zeros((84, 10), np.float32), lb, (64, 64))


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_exported_graph_tensors(built):
    out, manifest = built
    graph = onnx.load(out / "detection" / "model.onnx")
    (inp,), (outp,) = graph.graph.input, graph.graph.output
    assert inp.name == "images" and outp.name == "output0"
    # only the batch is dynamic: TensorRT builds for one image size
    assert _dims(inp) == ["batch", 3, 320, 320]
    assert _dims(outp) == ["batch", 84, 2100]
    # the anchor grid of the dynamic export was folded to constants once H/W were pinned
    assert not {"Shape", "Range"} & {n.op_type for n in graph.graph.node}
    assert manifest["imgsz"] == 320 and manifest["file"] == "detection/model.onnx"
    assert manifest["source"] == "random:yolov8n.yaml" and manifest["seed"] == SEED


@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_matches_pytorch(built, batch):
    out, _ = built
    rng = np.random.default_rng(1)
    x = np.concatenate([letterbox(rng.integers(0, 256, (200 + 40 * i, 300, 3), np.uint8), 320)[0]
                        for i in range(batch)])
    net = load_yolo(weights=None, seed=SEED).model.eval()  # unfused; the export fuses conv+bn
    with torch.no_grad():
        expected = net(torch.from_numpy(x))[0].numpy()
    model = OnnxModel(out / "detection" / "model.onnx")
    got = model(images=x)["output0"]
    assert got.shape == expected.shape == (batch, 84, 2100)
    # boxes are in pixels (up to 320), class scores are probabilities
    assert np.abs(got[:, :4] - expected[:, :4]).max() < 1e-3
    assert np.abs(got[:, 4:] - expected[:, 4:]).max() < 1e-5
    for i in range(batch):  # each image's rows are its batch-1 result
        np.testing.assert_allclose(got[i:i + 1], model(images=x[i:i + 1])["output0"], rtol=0, atol=1e-4)


def test_build_is_byte_reproducible(built, tmp_path):
    out, manifest = built
    again = build_detection(tmp_path, weights=None, size="tiny", seed=SEED)
    assert again["sha256"] == manifest["sha256"]
    assert (tmp_path / "detection" / "model.onnx").read_bytes() == (out / "detection" / "model.onnx").read_bytes()


def test_detect_end_to_end(built):
    out, _ = built
    model = OnnxModel(out / "detection" / "model.onnx")
    img = np.random.default_rng(2).integers(0, 256, (180, 240, 3), np.uint8)
    tensor, lb = letterbox(img, 320)  # what preprocess, detection and detection_postprocess do in turn
    det = postprocess(model(images=tensor)["output0"], lb, img.shape[:2], conf=0.0, max_det=5)  # random weights
    assert len(det) == 5
    assert (det.boxes[:, [0, 2]] <= 240).all() and (det.boxes[:, [1, 3]] <= 180).all() and (det.boxes >= 0).all()
    assert all(n in COCO_CLASSES for n in det.names)
    with pytest.raises(ValueError, match="missing inputs"):
        model(pixel_values=np.zeros((1, 3, 320, 320), np.float32))
    with pytest.raises(ValueError, match=r"images has shape \[1, 3, 256, 256\]; the model takes \['batch', 3, 320, 320\]"):
        model(images=np.zeros((1, 3, 256, 256), np.float32))
    with pytest.raises(ValueError, match="images has shape"):
        model(images=np.zeros((3, 320, 320), np.float32))
