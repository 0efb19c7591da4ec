"""What every model.py shares: config parameters, typed tensors in and out, errors as Triton errors.

Imported only inside tritonserver's python backend (it needs triton_python_backend_utils).
"""
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from restyle.profiles import get_profile


def read_inputs(request, names) -> dict:
    """Present inputs as numpy arrays; STRING tensors as Python str (one) or list[str]."""
    values = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            continue
        array = tensor.as_numpy()
        if array.dtype == np.object_:
            texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
            values[name] = texts[0] if array.size == 1 else texts
        else:
            values[name] = array
    return values


def scalar(inputs: dict, name: str, default=None):
    value = inputs.get(name)
    if value is None:
        return default
    return value if isinstance(value, str) else value.reshape(-1)[0].item()


class StageModel:
    """Base for every python model: subclasses implement setup() and run(inputs) (or execute).

    What setup() loads is released in finalize(), so an unloaded model gives its memory back
    (on a GPU, to the next model loaded into the same server)."""

    decoupled = False  # the decoupled models set this; their config must say so too

    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        if self.decoupled != pb_utils.using_decoupled_model_transaction_policy(self.config):
            raise pb_utils.TritonModelException(
                f"{self.config['name']}: this model is {'' if self.decoupled else 'not '}decoupled but its "
                "config.pbtxt says otherwise; render the repository again (`restyle models render`)")
        params = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        self.profile = get_profile(params["profile"])
        self.artifacts = Path(params["artifacts_dir"])
        self.version_dir = Path(args["model_repository"]) / args["model_version"]
        self.input_names = [t["name"] for t in self.config["input"]]
        self.output_types = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in self.config["output"]}
        before = set(vars(self))
        self.setup()
        self._loaded = set(vars(self)) - before

    def setup(self):
        pass

    def finalize(self):
        for name in self._loaded:
            setattr(self, name, None)
        if "torch" in sys.modules:
            import gc

            gc.collect()
            if sys.modules["torch"].cuda.is_available():
                sys.modules["torch"].cuda.empty_cache()

    def run(self, inputs: dict) -> dict:
        raise NotImplementedError

    def response(self, outputs: dict):
        # read_inputs hands a one-element STRING tensor over as str: a str output gets its axis back
        tensors = [pb_utils.Tensor(name, np.asarray([value] if isinstance(value, str) else value,
                                                    dtype=self.output_types[name]))
                   for name, value in outputs.items()]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            return self.response(self.run(read_inputs(request, self.input_names)))
        except Exception as exc:  # every failure becomes that request's error, never the server's
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(error_message(self.config["name"], exc)))


def error_message(model: str, exc: Exception) -> str:
    if isinstance(exc, ValueError):  # bad input: the message names the problem
        return f"{model}: {exc}"
    pb_utils.Logger.log_error(traceback.format_exc())
    return f"{model}: internal error ({type(exc).__name__}: {exc}); see the server log"


def send_error(sender, message: str) -> None:
    """End a decoupled request with an error. The final flag goes alone, after the error: a BLS
    caller iterating this model's responses never sees the end of an error sent with it."""
    sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def strings(values) -> np.ndarray:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)


def bls(model: str, inputs: dict, output_names: list[str], decoupled: bool = False):
    """Call another model in this server; inputs are numpy arrays or str."""
    tensors = [pb_utils.Tensor(name, strings([value]) if isinstance(value, str) else value)
               for name, value in inputs.items()]
    request = pb_utils.InferenceRequest(model_name=model, inputs=tensors, requested_output_names=output_names)
    return request.exec(decoupled=decoupled)


def outputs_of(response, names) -> dict:
    if response.has_error():
        raise PipelineError(response.error().message())
    found = {}
    for name in names:
        tensor = pb_utils.get_output_tensor_by_name(response, name)
        if tensor is not None:
            found[name] = tensor.as_numpy()
    return found


class PipelineError(ValueError):
    """A downstream model refused the request; its message is passed on unchanged."""


# request tensor -> GenerationParams field
OPTION_FIELDS = {"STYLE": "style", "PROMPT": "prompt", "SEED": "seed", "STEPS": "steps", "GUIDANCE": "guidance",
                 "DEPTH_SCALE": "depth_scale", "CANNY_SCALE": "canny_scale", "MODE": "mode", "SPEED": "speed"}


def generation_params(inputs: dict):
    """GenerationParams from a request's tensors, through the one request contract."""
    from restyle.contract import parse_request

    return parse_request(**{field: scalar(inputs, name) for name, field in OPTION_FIELDS.items() if name in inputs})


class OnnxStageModel(StageModel):
    """An exported ONNX model run by onnxruntime inside a python model, for servers without
    Triton's onnxruntime backend: same name, tensors and model.onnx as that backend serves.

    With max_batch_size > 0 the requests Triton's dynamic batcher groups into one execute()
    run as one onnxruntime batch, as that backend would run them."""

    def setup(self):
        from restyle.onnx_model import OnnxModel

        self.session = OnnxModel(self.version_dir / "model.onnx", self.profile.device)

    def run(self, inputs):
        return self.session(**inputs)

    def execute(self, requests):
        from restyle.batching import run_batched

        if not self.config["max_batch_size"]:
            return super().execute(requests)
        name = self.config["name"]
        try:
            results = run_batched(self.session, [read_inputs(r, self.input_names) for r in requests])
        except Exception as exc:  # the shared run failed: that is every request's error
            error = pb_utils.TritonError(error_message(name, exc))
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(error_message(name, r)))
                if isinstance(r, ValueError) else self.response(r) for r in results]
