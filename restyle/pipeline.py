"""The pipeline as data: every Triton model's tensors and the ensemble's wiring.

One description serves three readers: the config template (every config.pbtxt), the
ensemble `room_restyle` (its steps), and the decoupled `room_restyle_stream` model, which
walks the same steps through BLS so it can report progress — the graph is written once.
"""
from dataclasses import dataclass, field, replace

from restyle.profiles import Profile


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton type without the TYPE_ prefix
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class Step:
    model: str
    inputs: dict[str, str]  # model tensor -> pipeline tensor
    outputs: dict[str, str]  # model tensor -> pipeline tensor
    stage: str  # what a progress event calls this step
    weight: float  # share of the wall time, for progress in [0, 1]


@dataclass
class ModelSpec:
    name: str
    backend: str  # "python" | "onnxruntime" | "ensemble"
    inputs: list[Tensor]
    outputs: list[Tensor]
    holds_weights: bool = False  # runs on the profile's device; otherwise CPU
    decoupled: bool = False
    max_batch_size: int = 0
    steps: list[Step] = field(default_factory=list)


def _opt(name: str, dtype: str, dims: tuple[int, ...] = (1,)) -> Tensor:
    return Tensor(name, dtype, dims, optional=True)


IMAGE = Tensor("IMAGE", "UINT8", (-1, -1, 3))
SIZES = Tensor("SIZES", "INT32", (4,))  # original h, w; working h, w
# Every ensemble output is made by a step nothing else consumes (postprocess, quality,
# diffusion's SEED_USED and EVALS): when a client names only some outputs, Triton prunes each step all
# of whose outputs are unrequested ensemble outputs, even one a later step still needs, and
# the request ends in "unexpected deadlock". So intermediates travel under STAGE_ names and
# postprocess hands them out.
DEPTH_MAP = Tensor("DEPTH_MAP", "UINT8", (-1, -1))  # near = 255, at the working size
EDGE_MAP = Tensor("EDGE_MAP", "UINT8", (-1, -1))
GENERATION_OPTIONS = [
    _opt("PROMPT", "STRING"), _opt("SEED", "INT64"), _opt("STEPS", "INT32"),
    _opt("GUIDANCE", "FP32"), _opt("DEPTH_SCALE", "FP32"), _opt("CANNY_SCALE", "FP32"),
    _opt("MODE", "STRING"), _opt("SPEED", "STRING"),
]
OPTION_NAMES = [t.name for t in GENERATION_OPTIONS]
DIFFUSION_INPUTS = [
    IMAGE, Tensor("DEPTH", "FP32", (1, -1, -1)), Tensor("EDGES", "UINT8", (-1, -1)),
    Tensor("FURNITURE_MASK", "UINT8", (-1, -1)), Tensor("ROOM_TYPE", "STRING", (1,)),
    Tensor("STYLE", "STRING", (1,)), *GENERATION_OPTIONS,
]
# EVALS: denoiser evaluations the request cost (UNet and each ControlNet, times batch), a cost
# figure that does not depend on the machine (restyle.speed.EvalCounter).
EVALS = Tensor("EVALS", "INT32", (1,))
DIFFUSION_OUTPUTS = [Tensor("RESTYLED", "UINT8", (-1, -1, 3)), Tensor("SEED_USED", "INT64", (1,)), EVALS]
# Names the client sends, identical at the ensemble and the streaming model.
REQUEST_INPUTS = [
    Tensor("IMAGE_BYTES", "UINT8", (-1,)), Tensor("STYLE", "STRING", (1,)), *GENERATION_OPTIONS,
    _opt("ROOM_TYPE_OVERRIDE", "STRING"), _opt("CANNY_LOW", "INT32"), _opt("CANNY_HIGH", "INT32"),
]
DETECTIONS = [Tensor("BOXES", "FP32", (-1, 4)), Tensor("SCORES", "FP32", (-1,)),
              Tensor("CLASSES", "STRING", (-1,)), Tensor("FURNITURE", "BOOL", (-1,))]
ROOM = [Tensor("ROOM_TYPE", "STRING", (1,)), Tensor("ROOM_CONFIDENCE", "FP32", (1,)),
        Tensor("IS_ROOM", "BOOL", (1,))]
HANDED_OUT = [*DETECTIONS, *ROOM]  # made early, returned by postprocess


def staged(name: str) -> str:
    """The pipeline tensor carrying an intermediate that is also an ensemble output."""
    return f"STAGE_{name}"


RESULT_OUTPUTS = [
    Tensor("IMAGE_JPEG", "UINT8", (-1,)), *HANDED_OUT,
    Tensor("QUALITY_SCORE", "FP32", (1,)), Tensor("QUALITY_FLAGS", "STRING", (-1,)),
    Tensor("SEED_USED", "INT64", (1,)), EVALS,
    DEPTH_MAP, EDGE_MAP,
]
PROGRESS_OUTPUTS = [
    Tensor("STAGE", "STRING", (1,)), Tensor("PROGRESS", "FP32", (1,)), Tensor("STEP", "INT32", (2,)),
    Tensor("TIMINGS", "STRING", (1,)),
]


def _identity(*names: str) -> dict[str, str]:
    return {n: n for n in names}


def _staged(*names: str) -> dict[str, str]:
    return {n: staged(n) for n in names}


def steps() -> list[Step]:
    """The ensemble graph, in an order where every step's inputs exist before it runs."""
    opts = _identity(*OPTION_NAMES)
    return [
        Step("preprocess", {"IMAGE_BYTES": "IMAGE_BYTES", "STYLE": "STYLE", **opts},
             _identity("IMAGE", "SIZES", "DET_INPUT", "LETTERBOX", "DEPTH_INPUT"), "preprocess", 0.02),
        Step("detection", {"images": "DET_INPUT"}, {"output0": "DET_RAW"}, "detection", 0.03),
        Step("detection_postprocess", {"RAW": "DET_RAW", "LETTERBOX": "LETTERBOX", "SIZES": "SIZES"},
             _staged(*(t.name for t in DETECTIONS)), "detection", 0.01),
        Step("segmentation", {**_identity("IMAGE", "SIZES"), **_staged("BOXES", "FURNITURE")},
             _identity("FURNITURE_MASK"), "segmentation", 0.10),
        Step("room_classification", _identity("IMAGE", "ROOM_TYPE_OVERRIDE"),
             _staged(*(t.name for t in ROOM)), "room_classification", 0.03),
        Step("depth", {"pixel_values": "DEPTH_INPUT"}, {"depth": "DEPTH"}, "depth", 0.04),
        Step("edges", _identity("IMAGE", "CANNY_LOW", "CANNY_HIGH"), _identity("EDGES"), "edges", 0.01),
        Step("diffusion",
             {**_identity("IMAGE", "DEPTH", "EDGES", "FURNITURE_MASK", "STYLE"), "ROOM_TYPE": staged("ROOM_TYPE"),
              **opts},
             _identity("RESTYLED", "SEED_USED", "EVALS"), "diffusion", 0.70),
        Step("quality", _identity("IMAGE", "RESTYLED", "EDGES", "DEPTH"),
             _identity("QUALITY_SCORE", "QUALITY_FLAGS"), "quality", 0.03),
        Step("postprocess", {**_identity("RESTYLED", "SIZES", "DEPTH", "EDGES"),
                             **_identity(*(staged(t.name) for t in HANDED_OUT))},
             _identity("IMAGE_JPEG", "DEPTH_MAP", "EDGE_MAP", *(t.name for t in HANDED_OUT)), "postprocess", 0.03),
    ]


def model_specs(profile: Profile) -> list[ModelSpec]:
    det, dep = profile.detection_size, profile.depth_size
    det_mbs, dep_mbs = profile.batching.get("detection", 0), profile.batching.get("depth", 0)

    def batched(dims: tuple[int, ...], mbs: int) -> tuple[int, ...]:
        return dims[1:] if mbs else dims  # with max_batch_size the batch axis is implicit

    onnx_backend = "onnxruntime" if profile.onnx_serving == "onnxruntime" else "python"
    return [
        ModelSpec("preprocess", "python",
                  [Tensor("IMAGE_BYTES", "UINT8", (-1,)), Tensor("STYLE", "STRING", (1,)), *GENERATION_OPTIONS],
                  [IMAGE, SIZES, Tensor("DET_INPUT", "FP32", (1, 3, det, det)),
                   Tensor("LETTERBOX", "FP32", (3,)), Tensor("DEPTH_INPUT", "FP32", (1, 3, dep, dep))]),
        ModelSpec("detection", onnx_backend,
                  [Tensor("images", "FP32", batched((1, 3, det, det), det_mbs))],
                  [Tensor("output0", "FP32", batched((1, 84, -1), det_mbs))],
                  holds_weights=True, max_batch_size=det_mbs),
        ModelSpec("detection_postprocess", "python",
                  [Tensor("RAW", "FP32", (1, 84, -1)), Tensor("LETTERBOX", "FP32", (3,)), SIZES],
                  DETECTIONS),
        ModelSpec("segmentation", "python",
                  [IMAGE, Tensor("BOXES", "FP32", (-1, 4)), Tensor("FURNITURE", "BOOL", (-1,)), SIZES],
                  [Tensor("FURNITURE_MASK", "UINT8", (-1, -1))],
                  holds_weights=True),
        ModelSpec("room_classification", "python",
                  [IMAGE, _opt("ROOM_TYPE_OVERRIDE", "STRING")],
                  ROOM, holds_weights=True),
        ModelSpec("depth", onnx_backend,
                  [Tensor("pixel_values", "FP32", batched((1, 3, dep, dep), dep_mbs))],
                  [Tensor("depth", "FP32", batched((1, dep, dep), dep_mbs))],
                  holds_weights=True, max_batch_size=dep_mbs),
        ModelSpec("edges", "python", [IMAGE, _opt("CANNY_LOW", "INT32"), _opt("CANNY_HIGH", "INT32")],
                  [Tensor("EDGES", "UINT8", (-1, -1))]),
        # The ensemble needs a request/response model; the weights live once, in the
        # decoupled engine, which the streaming model also calls for per-step progress.
        ModelSpec("diffusion", "python", DIFFUSION_INPUTS, DIFFUSION_OUTPUTS),
        ModelSpec("diffusion_engine", "python",
                  [*DIFFUSION_INPUTS, _opt("PROGRESS", "INT32"), _opt("CANCEL_KEY", "STRING")],
                  [*DIFFUSION_OUTPUTS, Tensor("STEP", "INT32", (2,))],
                  holds_weights=True, decoupled=True),
        ModelSpec("quality", "python",
                  [IMAGE, Tensor("RESTYLED", "UINT8", (-1, -1, 3)), Tensor("EDGES", "UINT8", (-1, -1)),
                   Tensor("DEPTH", "FP32", (1, -1, -1))],
                  [Tensor("QUALITY_SCORE", "FP32", (1,)), Tensor("QUALITY_FLAGS", "STRING", (-1,))]),
        ModelSpec("postprocess", "python",
                  [Tensor("RESTYLED", "UINT8", (-1, -1, 3)), SIZES, Tensor("DEPTH", "FP32", (1, -1, -1)),
                   Tensor("EDGES", "UINT8", (-1, -1)), *(replace(t, name=staged(t.name)) for t in HANDED_OUT)],
                  [Tensor("IMAGE_JPEG", "UINT8", (-1,)), DEPTH_MAP, EDGE_MAP, *HANDED_OUT]),
        ModelSpec("room_restyle", "ensemble", REQUEST_INPUTS, RESULT_OUTPUTS, steps=steps()),
        ModelSpec("room_restyle_stream", "python", REQUEST_INPUTS, [*RESULT_OUTPUTS, *PROGRESS_OUTPUTS],
                  decoupled=True),
    ]
