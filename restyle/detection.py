"""YOLOv8 detection around an ONNX graph: letterbox in, boxes out.

The graph is the raw ultralytics export (`output0` [batch, 4+80, N], boxes as cx,cy,w,h in
letterbox pixels, per-class sigmoid scores), so NMS and the mapping back to image pixels
live here, where they can be tested without a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

COCO_CLASSES: list[str] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]

# What a restyle may replace: movable furniture, appliances and decor (not people, pets or
# the room's structure).
FURNITURE_CLASSES: frozenset[str] = frozenset({
    "chair", "couch", "bed", "dining table", "potted plant", "tv", "toilet", "sink",
    "refrigerator", "oven", "microwave", "toaster", "clock", "vase", "book", "laptop",
    "bench", "teddy bear", "keyboard", "mouse", "remote", "bottle", "wine glass", "cup",
    "bowl", "suitcase", "umbrella", "scissors",
})

LETTERBOX_FILL = 114  # grey padding, what ultralytics trains with


@dataclass
class Detections:
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    names: list[str] = field(default_factory=list)
    furniture: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def __len__(self) -> int:
        return len(self.scores)


def letterbox(img: np.ndarray, size: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """Scale the image into a size x size square (aspect kept, grey padding, centred).

    Returns the NCHW float32 0..1 tensor and lb = [scale, pad_x, pad_y].
    """
    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = min(size, round(w * scale)), min(size, round(h * scale))
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = cv2.resize(img, (nw, nh), interpolation=interp)
    tensor = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    return tensor, np.array([scale, pad_x, pad_y], np.float32)


def postprocess(raw: np.ndarray, lb: np.ndarray, out_hw: tuple[int, int], *, conf: float = 0.25,
                iou: float = 0.45, max_det: int = 100, out_scale: float = 1.0) -> Detections:
    """Turn YOLOv8 raw output [1, 4+C, N] into class-aware-NMSed boxes.

    Boxes are mapped back through the letterbox `lb` to the pixels of the image that was
    letterboxed (of size out_hw, where they are clipped), then multiplied by `out_scale` to
    express them in another resolution (e.g. the original photo's).
    """
    if raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[1] < 5:
        raise ValueError(f"expected raw detections [1, 4+classes, N], got {raw.shape}")
    pred = raw[0].T.astype(np.float32)  # [N, 4+C]
    class_scores = pred[:, 4:]
    class_ids = class_scores.argmax(1).astype(np.int32)
    scores = class_scores[np.arange(len(pred)), class_ids]
    keep = scores >= conf
    if not keep.any():
        return Detections()
    cxcywh, scores, class_ids = pred[keep, :4], scores[keep], class_ids[keep]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)

    # NMS in letterbox pixels, where the score threshold was judged; batched = class-aware.
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), conf, iou)
    idx = np.asarray(idx, np.int64).reshape(-1)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max_det]

    scale, pad_x, pad_y = (float(v) for v in lb)
    boxes = (xyxy[idx] - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)) / scale
    h, w = out_hw
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    boxes *= out_scale
    ids = class_ids[idx]
    names = [COCO_CLASSES[i] if i < len(COCO_CLASSES) else f"class_{i}" for i in ids]
    return Detections(boxes=boxes.astype(np.float32), scores=scores[idx].astype(np.float32),
                      class_ids=ids.astype(np.int32), names=names,
                      furniture=np.array([n in FURNITURE_CLASSES for n in names], bool))
