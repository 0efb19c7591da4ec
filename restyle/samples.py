"""A synthetic room photo (no downloads, no committed images): walls, floor, window, furniture in perspective."""
import cv2
import numpy as np


def synthetic_room(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """RGB uint8 image of a simple one-point-perspective room with a window, a sofa, a table, a lamp."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    w, h = width, height
    back = np.array([[w * 0.3, h * 0.25], [w * 0.7, h * 0.25], [w * 0.7, h * 0.62], [w * 0.3, h * 0.62]], np.int32)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.int32)
    wall = rng.integers(170, 230, 3)
    faces = [  # ceiling, right wall, floor, left wall, back wall
        (np.array([corners[0], corners[1], back[1], back[0]]), wall + 15),
        (np.array([back[1], corners[1], corners[2], back[2]]), wall - 20),
        (np.array([back[3], back[2], corners[2], corners[3]]), rng.integers(90, 140, 3)),
        (np.array([corners[0], back[0], back[3], corners[3]]), wall - 30),
        (back, wall),
    ]
    for poly, color in faces:
        cv2.fillPoly(img, [poly], [int(c) for c in np.clip(color, 0, 255)])
        cv2.polylines(img, [poly], True, (60, 60, 60), 2)
    # window on the back wall, with panes
    x0, y0, x1, y1 = int(w * 0.42), int(h * 0.3), int(w * 0.58), int(h * 0.5)
    cv2.rectangle(img, (x0, y0), (x1, y1), (200, 225, 250), -1)
    cv2.rectangle(img, (x0, y0), (x1, y1), (250, 250, 250), 4)
    cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1), (250, 250, 250), 3)
    # sofa: seat, back, arms
    sofa = tuple(int(c) for c in rng.integers(40, 120, 3))
    cv2.rectangle(img, (int(w * 0.12), int(h * 0.66)), (int(w * 0.5), int(h * 0.84)), sofa, -1)
    cv2.rectangle(img, (int(w * 0.12), int(h * 0.56)), (int(w * 0.5), int(h * 0.68)), [max(c - 25, 0) for c in sofa], -1)
    # coffee table with legs
    cv2.rectangle(img, (int(w * 0.55), int(h * 0.74)), (int(w * 0.8), int(h * 0.78)), (70, 45, 30), -1)
    for x in (0.57, 0.78):
        cv2.rectangle(img, (int(w * x), int(h * 0.78)), (int(w * x) + 6, int(h * 0.88)), (60, 40, 25), -1)
    # floor lamp
    cv2.line(img, (int(w * 0.88), int(h * 0.45)), (int(w * 0.88), int(h * 0.9)), (40, 40, 40), 4)
    cv2.ellipse(img, (int(w * 0.88), int(h * 0.45)), (int(w * 0.04), int(h * 0.03)), 0, 180, 360, (240, 220, 160), -1)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def synthetic_scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The synthetic room with the control maps the diffusion engine takes: a depth ramp (uint8,
    near at the bottom) and its canny edges."""
    from restyle.edges import canny

    image = synthetic_room(width, height)
    depth = np.tile(np.linspace(0, 255, height, dtype=np.float32)[:, None], (1, width)).astype(np.uint8)
    return image, depth, canny(image)


def furniture_mask(height: int, width: int) -> np.ndarray:
    """A furniture mask (uint8 0/255) for the synthetic room: one box, for the mask modes."""
    mask = np.zeros((height, width), np.uint8)
    mask[height // 3:2 * height // 3, width // 4:width // 2] = 255
    return mask


if __name__ == "__main__":  # `python -m restyle.samples room.jpg`: a photo to try the commands with
    import sys
    from pathlib import Path

    from restyle.imaging import encode_jpeg

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "room.jpg")
    out.write_bytes(encode_jpeg(synthetic_room()))
    print(f"wrote {out} (640x480, synthetic)")
