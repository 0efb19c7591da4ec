"""Zero-shot room type with CLIP: which room is it, and is it a room at all?"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from restyle.contract import ROOM_TYPES

# Competing labels: a photo closest to one of these is rejected as "not a room".
NON_ROOM_LABELS: list[str] = [
    "a photo of a person", "a photo of an animal", "a photo of food",
    "a screenshot or document", "an outdoor landscape", "a photo of a car",
    "a close-up photo of a single object",
]
NOT_A_ROOM = "not a room"


@dataclass
class RoomPrediction:
    room_type: str
    confidence: float
    is_room: bool


class RoomClassifier:
    def __init__(self, model_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
        from transformers import CLIPModel, CLIPProcessor

        self.device, self.dtype = device, dtype
        self.model = CLIPModel.from_pretrained(model_dir, dtype=dtype, local_files_only=True).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(model_dir, local_files_only=True)
        prompts = [f"a photo of a {r}" for r in ROOM_TYPES] + NON_ROOM_LABELS
        # The label set is fixed: embed it once instead of on every request.
        with torch.inference_mode():
            tokens = self.processor(text=prompts, return_tensors="pt", padding=True).to(device)
            text = self.model.get_text_features(**tokens)
            text = getattr(text, "pooler_output", text)
            self.text_embeds = torch.nn.functional.normalize(text.float(), dim=-1)

    @torch.inference_mode()
    def classify(self, img: np.ndarray) -> RoomPrediction:
        pixels = self.processor(images=img, return_tensors="pt")["pixel_values"]
        image = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        image = getattr(image, "pooler_output", image)
        image = torch.nn.functional.normalize(image.float(), dim=-1)
        logits = self.model.logit_scale.exp().float() * image @ self.text_embeds.T
        probs = logits.softmax(-1)[0].cpu().numpy()
        best = int(probs.argmax())
        if best >= len(ROOM_TYPES):
            return RoomPrediction(NOT_A_ROOM, float(probs[best]), False)
        return RoomPrediction(ROOM_TYPES[best], float(probs[best]), True)
