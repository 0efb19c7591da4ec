"""The ensemble's graph walked through BLS, streaming progress stage by stage and step by step.

Decoupled: progress responses (STAGE, PROGRESS, STEP) while it runs, then one response with
the same outputs as room_restyle plus TIMINGS. The steps come from restyle.pipeline, the same
list the ensemble's config is rendered from.
"""
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

from restyle import cancellation
from restyle.pipeline import RESULT_OUTPUTS, steps
from restyle.triton_adapter import StageModel, bls, error_message, outputs_of, read_inputs, send_error, strings

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
RESULT_NAMES = [t.name for t in RESULT_OUTPUTS]


class Cancelled(Exception):
    pass


class TritonPythonModel(StageModel):
    decoupled = True

    def setup(self):
        self.steps = steps()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self.stream(request, sender)
            except Exception as exc:
                send_error(sender, error_message(self.config["name"], exc))

    def progress(self, sender, stage, fraction, step=(0, 0)):
        sender.send(self.response({"STAGE": strings([stage]), "PROGRESS": [round(fraction, 4)], "STEP": list(step)}))

    def stream(self, request, sender):
        tensors = read_inputs(request, self.input_names)
        timings, done = {}, 0.0
        for step in self.steps:
            if request.is_cancelled():
                raise Cancelled("request cancelled by the client")
            self.progress(sender, step.stage, done)
            started = time.perf_counter()
            inputs = {key: tensors[value] for key, value in step.inputs.items() if value in tensors}
            outputs = list(step.outputs)
            if step.model == "diffusion":
                produced = self.generate(request, sender, inputs, outputs, done, step)
            else:
                produced = outputs_of(bls(step.model, inputs, outputs), outputs)
            tensors.update({step.outputs[name]: value for name, value in produced.items()})
            timings[step.stage] = timings.get(step.stage, 0.0) + time.perf_counter() - started
            done += step.weight
        final = {name: tensors[name] for name in RESULT_NAMES}
        final.update(STAGE=strings(["done"]), PROGRESS=[1.0], STEP=[0, 0],
                     TIMINGS=strings([json.dumps({k: round(v, 4) for k, v in timings.items()})]))
        sender.send(self.response(final), flags=FINAL)

    def generate(self, request, sender, inputs, outputs, done, step):
        """The engine itself, with per-step progress (the plain diffusion model only forwards);
        a cancelled client stops the engine at its next step instead of after the last."""
        key = cancellation.new_key()
        inputs.update(PROGRESS=np.array([1], np.int32), CANCEL_KEY=key)
        produced = {}
        try:
            for response in bls("diffusion_engine", inputs, outputs + ["STEP"], decoupled=True):
                if request.is_cancelled():
                    cancellation.cancel(key)
                    continue  # drain: the engine answers its final error at the next step
                found = outputs_of(response, outputs + ["STEP"])
                if "STEP" in found and "RESTYLED" not in found:
                    current, total = (int(v) for v in found["STEP"])
                    self.progress(sender, step.stage, done + step.weight * current / max(total, 1), (current, total))
                produced.update({k: v for k, v in found.items() if k != "STEP"})
        finally:
            cancellation.clear(key)
        if request.is_cancelled():
            raise Cancelled("request cancelled by the client")
        return produced
