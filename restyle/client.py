"""Calling room_restyle (HTTP or gRPC) and room_restyle_stream (gRPC streaming) with tritonclient."""
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from restyle.pipeline import DEPTH_MAP, EDGE_MAP, RESULT_OUTPUTS

ENSEMBLE = "room_restyle"
STREAM = "room_restyle_stream"
MAP_OUTPUTS = {DEPTH_MAP.name, EDGE_MAP.name}
# Optional request fields -> (tensor, dtype)
OPTIONAL = {"prompt": ("PROMPT", "BYTES"), "room_type": ("ROOM_TYPE_OVERRIDE", "BYTES"),
            "seed": ("SEED", "INT64"), "steps": ("STEPS", "INT32"), "guidance": ("GUIDANCE", "FP32"),
            "depth_scale": ("DEPTH_SCALE", "FP32"), "canny_scale": ("CANNY_SCALE", "FP32"),
            "mode": ("MODE", "BYTES"), "speed": ("SPEED", "BYTES"),
            "canny_low": ("CANNY_LOW", "INT32"), "canny_high": ("CANNY_HIGH", "INT32")}


class TritonRequestError(Exception):
    """The pipeline refused the request (bad photo or options): retrying will not help."""


class TritonUnavailable(Exception):
    """Server unreachable or a transient failure: worth retrying."""


class Cancelled(Exception):
    pass


@dataclass
class RestyleRequest:
    image: bytes
    style: str
    prompt: str | None = None
    room_type: str | None = None
    seed: int | None = None
    steps: int | None = None
    mode: str | None = None
    speed: str | None = None
    guidance: float | None = None
    depth_scale: float | None = None
    canny_scale: float | None = None
    canny_low: int | None = None
    canny_high: int | None = None


@dataclass
class Progress:
    stage: str
    progress: float
    step: int | None = None
    total_steps: int | None = None


@dataclass
class RestyleResult:
    image_jpeg: bytes
    room_type: str
    room_confidence: float
    is_room: bool
    detections: list[dict]
    quality_score: float
    quality_flags: list[str]
    seed: int
    evals: int | None = None  # denoiser evaluations (UNet and each ControlNet, times batch)
    timings: dict[str, float] = field(default_factory=dict)
    depth_map: np.ndarray | None = None
    edge_map: np.ndarray | None = None


def request_inputs(req: RestyleRequest, module) -> list:
    """InferInputs for tritonclient.http or tritonclient.grpc (same API)."""
    def make(name: str, dtype: str, value) -> object:
        if name == "IMAGE_BYTES":
            array = np.frombuffer(value, dtype=np.uint8)
        else:
            array = np.array([value.encode() if dtype == "BYTES" else value], dtype=triton_to_np_dtype(dtype))
        tensor = module.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        return tensor

    inputs = [make("IMAGE_BYTES", "UINT8", req.image), make("STYLE", "BYTES", req.style)]
    for attr, (name, dtype) in OPTIONAL.items():
        value = getattr(req, attr)
        if value is not None:
            inputs.append(make(name, dtype, value))
    return inputs


def _texts(array: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def parse_result(get: Callable[[str], np.ndarray | None], timings: dict | None = None) -> RestyleResult:
    boxes, scores = get("BOXES").reshape(-1, 4), get("SCORES").reshape(-1)
    names, furniture = _texts(get("CLASSES")), get("FURNITURE").reshape(-1)
    detections = [{"box": [round(float(v), 1) for v in box], "score": round(float(score), 4),
                   "class_name": name, "furniture": bool(flag)}
                  for box, score, name, flag in zip(boxes, scores, names, furniture)]
    return RestyleResult(
        image_jpeg=get("IMAGE_JPEG").tobytes(), room_type=_texts(get("ROOM_TYPE"))[0],
        room_confidence=float(get("ROOM_CONFIDENCE").reshape(-1)[0]), is_room=bool(get("IS_ROOM").reshape(-1)[0]),
        detections=detections, quality_score=float(get("QUALITY_SCORE").reshape(-1)[0]),
        quality_flags=_texts(get("QUALITY_FLAGS")), seed=int(get("SEED_USED").reshape(-1)[0]),
        evals=None if get("EVALS") is None else int(get("EVALS").reshape(-1)[0]),
        timings=timings or {}, depth_map=get("DEPTH_MAP"), edge_map=get("EDGE_MAP"))


def _classify(exc: Exception) -> Exception:
    text = str(exc)
    # gRPC reports an unreachable server on a stream only as an invalid stream state.
    markers = ("UNAVAILABLE", "failed to connect", "internal error", "connection refused", "DEADLINE_EXCEEDED",
               "stream is no longer in valid state", "Socket closed")
    transient = any(m.lower() in text.lower() for m in markers)
    return (TritonUnavailable if transient else TritonRequestError)(text)


class TritonRestyleClient:
    def __init__(self, url: str = "localhost:8001", timeout_s: float = 600, protocol: str = "grpc"):
        self.url, self.timeout_s, self.protocol = url, timeout_s, protocol

    def _client(self):
        if self.protocol == "http":
            return httpclient.InferenceServerClient(self.url, network_timeout=self.timeout_s,
                                                    connection_timeout=self.timeout_s)
        return grpcclient.InferenceServerClient(self.url)

    def ready(self, timeout_s: float = 5) -> bool:
        """The streaming model (gRPC) or the ensemble (HTTP) is ready; False, never a hang, when the
        server is down or does not answer within timeout_s."""
        try:
            if self.protocol == "http":
                return bool(self._client().is_model_ready(ENSEMBLE))
            return bool(self._client().is_model_ready(STREAM, client_timeout=timeout_s))
        except Exception:
            return False

    def infer(self, req: RestyleRequest, maps: bool = True) -> RestyleResult:
        """One plain call to the ensemble (HTTP or gRPC); `maps=False` does not ask for the
        depth and edge maps (still computed: only their transfer is saved)."""
        module = httpclient if self.protocol == "http" else grpcclient
        outputs = [module.InferRequestedOutput(t.name) for t in RESULT_OUTPUTS
                   if maps or t.name not in MAP_OUTPUTS]
        try:
            kwargs = {} if self.protocol == "http" else {"client_timeout": self.timeout_s}
            result = self._client().infer(ENSEMBLE, request_inputs(req, module), outputs=outputs, **kwargs)
        except InferenceServerException as exc:
            raise _classify(exc) from exc
        except OSError as exc:  # the HTTP client raises the socket's own error (refused, reset, timed out)
            raise TritonUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return parse_result(result.as_numpy)

    def restyle(self, req: RestyleRequest, on_progress: Callable[[Progress], None] | None = None,
                cancel: threading.Event | None = None) -> RestyleResult:
        """Run through room_restyle_stream over gRPC, reporting progress; `cancel` stops the stream."""
        client = grpcclient.InferenceServerClient(self.url)
        responses: queue.Queue = queue.Queue()
        try:
            client.start_stream(callback=lambda result, error: responses.put((result, error)))
            client.async_stream_infer(STREAM, request_inputs(req, grpcclient), request_id=uuid.uuid4().hex,
                                      enable_empty_final_response=True)
        except InferenceServerException as exc:
            client.close()
            raise _classify(exc) from exc
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    client.stop_stream(cancel_requests=True)
                    raise Cancelled("cancelled")
                if time.monotonic() > deadline:
                    client.stop_stream(cancel_requests=True)
                    raise TritonUnavailable(f"no result within {self.timeout_s:.0f} s")
                try:
                    result, error = responses.get(timeout=0.2)
                except queue.Empty:
                    continue
                if error is not None:
                    raise _classify(error)
                stage = result.as_numpy("STAGE")
                if stage is None:
                    continue  # the empty final marker after the result
                stage_name = _texts(stage)[0]
                if stage_name == "done":
                    timings = json.loads(_texts(result.as_numpy("TIMINGS"))[0])
                    return parse_result(result.as_numpy, timings)
                if on_progress:
                    step, total = (int(v) for v in result.as_numpy("STEP"))
                    on_progress(Progress(stage_name, float(result.as_numpy("PROGRESS")[0]),
                                         step or None, total or None))
        except KeyboardInterrupt:
            client.stop_stream(cancel_requests=True)  # else stop_stream below waits for the whole run
            raise
        finally:
            client.stop_stream()
            client.close()
