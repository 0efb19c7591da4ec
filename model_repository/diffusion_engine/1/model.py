"""SD1.5 + ControlNet (depth + canny), decoupled: optional per-step progress, then the image.

With a CANCEL_KEY, the generation stops at the next step once restyle.cancellation's flag for
that key is raised (room_restyle_stream does that when its client cancels).
"""
import secrets
from collections import Counter

import torch
import triton_python_backend_utils as pb_utils

from restyle import cancellation
from restyle.depth import to_map
from restyle.diffusion import Restyler, warmup_sizes
from restyle.triton_adapter import StageModel, error_message, generation_params, read_inputs, scalar, send_error

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(StageModel):
    decoupled = True

    def setup(self):
        p = self.profile
        self.restyler = Restyler.load(self.artifacts / "diffusion", p.device, getattr(torch, p.dtype),
                                      p.compile_backend, p.compile_scope)
        if p.compile_backend:  # compiled at each graph's first call: during the start, not a request
            self.restyler.warm_up(warmup_sizes(p.working_long_side, p.size_multiple),
                                  report=pb_utils.Logger.log_info)

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self.generate(request, read_inputs(request, self.input_names), sender)
            except cancellation.GenerationCancelled as exc:
                pb_utils.Logger.log_info(f"{self.config['name']}: {exc}")
                send_error(sender, str(exc))
            except Exception as exc:
                send_error(sender, error_message(self.config["name"], exc))

    def generate(self, request, inputs, sender):
        params = generation_params(inputs)
        params.room_type = scalar(inputs, "ROOM_TYPE")  # the classifier's answer (or the checked override)
        if params.seed is None:
            params.seed = secrets.randbelow(2**31)  # reported back, so any result can be reproduced
        key = scalar(inputs, "CANCEL_KEY")
        if key:
            cancellation.is_cancelled(key)  # a malformed key is refused before any work
        image = inputs["IMAGE"]
        depth = to_map(inputs["DEPTH"], image.shape[:2])
        report = bool(scalar(inputs, "PROGRESS", 0))

        def on_step(step, total):
            if request.is_cancelled() or (key and cancellation.is_cancelled(key)):
                raise cancellation.GenerationCancelled(f"generation cancelled at step {step} of {total}")
            if report:
                sender.send(self.response({"STEP": [step, total]}))

        evals = Counter()
        try:
            result = self.restyler.generate(image, depth, inputs["EDGES"], inputs["FURNITURE_MASK"], params,
                                            callback=on_step, evals=evals)
        finally:
            if key:
                cancellation.clear(key)
        sender.send(self.response({"RESTYLED": result, "SEED_USED": [params.seed], "EVALS": [evals.total()]}),
                    flags=FINAL)
