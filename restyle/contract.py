"""The request contract: what one restyle request may ask for, and its limits, written once.

Torch-free on purpose: the API, the worker, Triton's preprocess and the diffusion engine all
import it. Each tier turns what it received into `GenerationParams` with `parse_request` at
its edge (the API's form, the Triton request's tensors); everything inside trusts the result.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real

from restyle.styles import STYLES, normalize_style

MODES = ("full", "furniture", "keep_furniture")
# quality: the full schedule; balanced: cheap cuts that keep the geometry; fast: a few
# consistency (LCM) steps. Each mode's default step count when a request names none:
SPEEDS = ("quality", "balanced", "fast")
DEFAULT_STEPS = {"quality": 20, "balanced": 20, "fast": 4}
MAX_STEPS = 50
MAX_PROMPT_CHARS = 300
MAX_ROOM_TYPE_CHARS = 64
# What a client may name instead of letting CLIP classify the photo.
ROOM_TYPES: list[str] = [
    "living room", "bedroom", "kitchen", "bathroom", "dining room", "home office",
    "kids room", "hallway", "laundry room", "attic", "basement", "balcony",
]
MAX_SEED = 2**63 - 1
GUIDANCE_RANGE = (0.0, 30.0)
CONTROL_SCALE_RANGE = (0.0, 2.0)
# Uploads: read from the header before decoding, so a PNG claiming 30000x30000 costs nothing.
MAX_INPUT_PIXELS = 40_000_000
MIN_INPUT_SIDE = 32


class InvalidRequest(ValueError):
    """A request field is out of contract; `field` names it, the message says what is allowed."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class GenerationParams:
    style: str
    prompt: str | None = None
    room_type: str | None = None
    seed: int | None = None  # None: the engine draws one and reports it
    steps: int | None = None  # None: DEFAULT_STEPS[speed]
    guidance: float = 7.5
    depth_scale: float = 1.0
    canny_scale: float = 0.5
    mode: str = "full"
    speed: str = "quality"

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else DEFAULT_STEPS[self.speed]

    def to_dict(self) -> dict:
        """The fields a client gave (None left out): what a job record keeps."""
        return {k: v for k, v in asdict(self).items() if v is not None}


FIELDS = tuple(f.name for f in fields(GenerationParams))


def check_style(name) -> str:
    """The canonical style name ('Mid Century Modern' -> 'mid-century-modern')."""
    key = normalize_style(_text(name) or "")
    if key not in STYLES:
        raise InvalidRequest("style", f"unknown style '{name}'; choose one of: {', '.join(STYLES)}")
    return key


def check_room_type(name) -> str:
    """A client-given room type, normalised ('  Living_Room ' -> 'living room')."""
    room = " ".join(str(_text(name)).strip().lower().replace("_", " ").split())
    if room not in ROOM_TYPES:
        raise InvalidRequest("room_type", f"unknown room type {name!r}; choose one of: {', '.join(ROOM_TYPES)}")
    return room


def parse_request(**given) -> GenerationParams:
    """Validate and normalise a request's generation fields; InvalidRequest names the first bad one.

    Accepts what the edges hand over: str or bytes text, numpy scalars, integral floats;
    None or "" for an optional field means "not given".
    """
    unknown = set(given) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown request fields: {', '.join(sorted(unknown))}")
    raw = {k: _text(v) for k, v in given.items()}
    raw = {k: v for k, v in raw.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    if "style" not in raw:
        raise InvalidRequest("style", f"style is required; choose one of: {', '.join(STYLES)}")
    p = GenerationParams(style=check_style(raw["style"]))
    if "prompt" in raw:
        p.prompt = " ".join(str(raw["prompt"]).split())
        if len(p.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest("prompt", f"prompt is too long: {len(p.prompt)} characters, "
                                           f"at most {MAX_PROMPT_CHARS} allowed")
    if "room_type" in raw:
        p.room_type = check_room_type(raw["room_type"])
    p.speed = _choice("speed", raw.get("speed", p.speed), SPEEDS)
    p.mode = _choice("mode", raw.get("mode", p.mode), MODES)
    if "steps" in raw:
        p.steps = _integer("steps", raw["steps"], 1, MAX_STEPS)
    if "seed" in raw:
        p.seed = _integer("seed", raw["seed"], 0, MAX_SEED)
    p.guidance = _number("guidance", raw.get("guidance", p.guidance), *GUIDANCE_RANGE)
    p.depth_scale = _number("depth_scale", raw.get("depth_scale", p.depth_scale), *CONTROL_SCALE_RANGE)
    p.canny_scale = _number("canny_scale", raw.get("canny_scale", p.canny_scale), *CONTROL_SCALE_RANGE)
    return p


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _choice(name: str, value, allowed: tuple[str, ...]) -> str:
    value = str(value).strip().lower()
    if value not in allowed:
        raise InvalidRequest(name, f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, Real) or (
            not isinstance(value, Integral) and not float(value).is_integer()):
        raise InvalidRequest(name, f"{name} must be a whole number between {low} and {high}, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise InvalidRequest(name, f"{name} must be between {low} and {high}, got {value}")
    return value


def _number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise InvalidRequest(name, f"{name} must be a number between {low:g} and {high:g}, got {value!r}")
    value = float(value)
    if not low <= value <= high:
        raise InvalidRequest(name, f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value
