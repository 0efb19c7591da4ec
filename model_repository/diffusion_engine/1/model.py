"""SD1.5 + ControlNet (depth + canny), decoupled: optional per-step progress, then the image."""
import secrets

import torch
import triton_python_backend_utils as pb_utils

from restyle.depth import to_map
from restyle.diffusion import Restyler
from restyle.triton_adapter import StageModel, error_message, generation_params, read_inputs, scalar

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(StageModel):
    def setup(self):
        self.restyler = Restyler.load(self.artifacts / "diffusion", self.profile.device,
                                      getattr(torch, self.profile.dtype))

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self.generate(read_inputs(request, self.input_names), sender)
            except Exception as exc:
                error = pb_utils.TritonError(error_message(self.config["name"], exc))
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def generate(self, inputs, sender):
        params = generation_params(inputs, self.profile, room_type=scalar(inputs, "ROOM_TYPE"))
        if "SEED" not in inputs:
            params.seed = secrets.randbelow(2**31)  # reported back, so any result can be reproduced
        image = inputs["IMAGE"]
        depth = to_map(inputs["DEPTH"], image.shape[:2])
        mask = inputs["FURNITURE_MASK"]
        progress = None
        if scalar(inputs, "PROGRESS", 0):
            def progress(step, total):
                sender.send(self.response({"STEP": [step, total]}))
        result = self.restyler.generate(image, depth, inputs["EDGES"], mask, params, callback=progress)
        sender.send(self.response({"RESTYLED": result, "SEED_USED": [params.seed]}), flags=FINAL)
