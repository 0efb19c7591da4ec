"""SAM2 masks from detection boxes: which pixels are furniture the restyle may replace."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# hiera-tiny in every profile: the T4 budget (restyle/profiles.py) has no room for hiera-large,
# and masks of furniture boxes gain little from it. The build manifest records it.
SAM2_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


class Segmenter:
    def __init__(self, checkpoint: Path, config_name: str = SAM2_TINY_CONFIG, device: str = "cpu"):
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device = device
        model = build_sam2(config_name, str(checkpoint), device=device, mode="eval")
        self.predictor = SAM2ImagePredictor(model)
        cuda = device.startswith("cuda") and torch.cuda.is_available()
        self._amp_dtype = (torch.bfloat16 if cuda and torch.cuda.get_device_capability(device)[0] >= 8
                           else torch.float16)

    @torch.inference_mode()
    def segment(self, img: np.ndarray, boxes: np.ndarray, furniture: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Masks bool [K,H,W] for boxes [K,4] (x1,y1,x2,y2 in img pixels) and the union of
        the furniture ones as uint8 [H,W] 0/255."""
        h, w = img.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        furniture = np.asarray(furniture, bool).reshape(-1)
        if len(boxes) != len(furniture):
            raise ValueError(f"{len(boxes)} boxes but {len(furniture)} furniture flags")
        if len(boxes) == 0:
            return np.zeros((0, h, w), bool), np.zeros((h, w), np.uint8)
        # Mixed precision only pays off on GPUs (on CPU it is slower and less exact); bf16
        # where the GPU has it (Ampere+), fp16 on a T4.
        with torch.autocast(device_type="cuda", dtype=self._amp_dtype, enabled=self.device.startswith("cuda")):
            self.predictor.set_image(img)
            masks, _, _ = self.predictor.predict(box=boxes, multimask_output=False)
        masks = np.asarray(masks).reshape(len(boxes), h, w) > 0
        union = masks[furniture].any(0) if furniture.any() else np.zeros((h, w), bool)
        return masks, union.astype(np.uint8) * 255
