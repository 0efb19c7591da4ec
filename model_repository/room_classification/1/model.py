"""Zero-shot room type with CLIP; an explicit override is taken as given."""
import torch

from restyle.contract import check_room_type
from restyle.room_classification import RoomClassifier
from restyle.triton_adapter import StageModel, scalar, strings


class TritonPythonModel(StageModel):
    def setup(self):
        self.classifier = RoomClassifier(self.artifacts / "room_classifier", self.profile.device,
                                         getattr(torch, self.profile.dtype))

    def run(self, inputs):
        override = (scalar(inputs, "ROOM_TYPE_OVERRIDE") or "").strip()
        if override:
            return {"ROOM_TYPE": strings([check_room_type(override)]), "ROOM_CONFIDENCE": [1.0], "IS_ROOM": [True]}
        found = self.classifier.classify(inputs["IMAGE"])
        return {"ROOM_TYPE": strings([found.room_type]), "ROOM_CONFIDENCE": [found.confidence],
                "IS_ROOM": [found.is_room]}
