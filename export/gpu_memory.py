"""`restyle bench gpu`'s memory figures for the models beside the diffusion engine (here, beside
their builders): each model the profile puts on the GPU, built with random weights of its
architecture, alone on the device, its peak (weights + activations of one request at the largest batch its config lets Triton form).

Segmentation and room classification run the serving classes themselves. Detection and depth are
served as ONNX through onnxruntime's TensorRT provider, which the GPU hosts lack: their torch
forward in the profile's dtype stands in (same weights; TensorRT's fused kernels and workspace
differ). sam2 and ultralytics are imported only here, so the rest of the benchmark runs without
them; a model that cannot be built or run there is reported as not measured, never guessed.
"""
from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from restyle.pipeline import model_specs
from restyle.profiles import Profile, get_profile
from restyle.samples import synthetic_room

MODELS = ("detection", "depth", "segmentation", "room_classification")
# Each model's peak, the CUDA context of one process, how many processes hold one when the t4
# profile serves, and all of it together (engine + models + a context per process): the figure a
# 16 GB T4 must hold.
MEMORY_KEYS = (*(f"peak_mem_mb_{name}" for name in MODELS), "cuda_context_mb", "gpu_processes", "t4_mem_mb")


def _detection(profile: Profile, device: str, dtype: torch.dtype, tmp: Path) -> Callable[[], object]:
    from export.vision import load_yolo

    net = load_yolo(weights=None, seed=0).model.to(device, dtype).eval()
    s = profile.detection_size
    x = torch.zeros(profile.batching.get("detection", 1), 3, s, s, device=device, dtype=dtype)
    return lambda: net(x)


def _depth(profile: Profile, device: str, dtype: torch.dtype, tmp: Path) -> Callable[[], object]:
    from export.vision import load_depth

    net, s = load_depth(weights=None, size=profile.model_size, seed=0)
    net = net.to(device, dtype)
    x = torch.zeros(profile.batching.get("depth", 1), 3, s, s, device=device, dtype=dtype)
    return lambda: net(x)


def _photo(profile: Profile) -> np.ndarray:
    long = profile.working_long_side
    return synthetic_room(long, long * 3 // 4)


def _segmentation(profile: Profile, device: str, dtype: torch.dtype, tmp: Path) -> Callable[[], object]:
    from export.vision import build_segmentation
    from restyle.segmentation import Segmenter

    build_segmentation(tmp, weights=None, size=profile.model_size, seed=0)
    segmenter = Segmenter(tmp / "segmentation" / "sam2.pt", device=device)
    img = _photo(profile)
    h, w = img.shape[:2]
    boxes = np.array([[w * i / 8, h / 4, w * (i + 3) / 8, h * 3 / 4] for i in range(4)], np.float32)
    return lambda: segmenter.segment(img, boxes, np.ones(len(boxes), bool))


def _room_classification(profile: Profile, device: str, dtype: torch.dtype, tmp: Path) -> Callable[[], object]:
    from export.vision import build_room_classifier
    from restyle.room_classification import RoomClassifier

    build_room_classifier(tmp, weights=None, size=profile.model_size, seed=0)
    classifier = RoomClassifier(tmp / "room_classifier", device, dtype)
    img = _photo(profile)
    return lambda: classifier.classify(img)


LOADERS = {"detection": _detection, "depth": _depth, "segmentation": _segmentation,
           "room_classification": _room_classification}


def gpu_processes(profile: Profile) -> int:
    """Processes holding a CUDA context when the profile serves: tritonserver (its onnxruntime
    models run inside it) and one stub per instance of each python model that holds weights."""
    return 1 + sum(profile.instance_count(spec.name) for spec in model_specs(profile)
                   if spec.holds_weights and spec.backend == "python")


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def measure(profile: Profile, device: str, progress: Callable[[str], None] = lambda _: None) -> dict[str, float | None]:
    """MiB per model in MODELS (None on a CPU, which has no such figure, or where the model could
    not be built or run there: said through ``progress``); each is built, run once and freed
    before the next."""
    cuda = device == "cuda"
    dtype = getattr(torch, profile.dtype)
    peaks: dict[str, float | None] = {}
    for name in MODELS:
        _free(device)
        if cuda:
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        progress(f"memory: {name}")
        with tempfile.TemporaryDirectory(prefix=f"restyle-mem-{name}-") as tmp:
            # A host without the model's package (or with a torchvision of another torch) loses
            # this one figure, not the diffusion figures measured before it.
            run, peaks[name] = None, None
            try:
                run = LOADERS[name](profile, device, dtype, Path(tmp))
                with torch.inference_mode():
                    run()
                if cuda:
                    torch.cuda.synchronize()
                    peaks[name] = (torch.cuda.max_memory_allocated() - before) / 2**20
                    progress(f"memory: {name} {peaks[name]:.0f} MiB")
            except Exception as exc:  # noqa: BLE001 - reported, and the figure stays empty
                progress(f"memory: {name} not measured ({type(exc).__name__}: {exc}); "
                         "scripts/gpu_wheels.sh carries the packages it needs")
            del run
    _free(device)
    return peaks


def context_mb() -> float:
    """What this process holds on the GPU outside torch's allocator: the CUDA context with the
    kernels and library handles loaded so far (measured after everything ran, so all of them)."""
    free, total = torch.cuda.mem_get_info()
    return (total - free - torch.cuda.memory_reserved()) / 2**20


def served_total(engine_mb: float | None, models: dict[str, float | None], context: float | None,
                 processes: int) -> float | None:
    """MiB the profile holds on the GPU while serving: the engine, every other model, and a CUDA
    context per process (None unless every part was measured)."""
    parts = [engine_mb, *models.values(), context]
    if None in parts:
        return None
    return engine_mb + sum(models.values()) + context * processes


def figures(engine_mb: float | None, device: str, progress: Callable[[str], None] = lambda _: None) -> dict:
    """MEMORY_KEYS, the t4 profile's models measured on ``device`` (on a CPU, where every MiB figure
    is None, a rehearsal of the code: the tiny profile's sizes in the t4 profile's dtype)."""
    cuda = device == "cuda"
    t4 = get_profile("t4")
    models = measure(t4 if cuda else replace(get_profile("tiny"), dtype=t4.dtype), device, progress)
    context = context_mb() if cuda else None
    processes = gpu_processes(t4)
    total = served_total(engine_mb, models, context, processes)
    out = {f"peak_mem_mb_{name}": None if mb is None else round(mb) for name, mb in models.items()}
    out.update(cuda_context_mb=None if context is None else round(context), gpu_processes=processes,
               t4_mem_mb=None if total is None else round(total))
    return out  # in MEMORY_KEYS' order: models in MODELS' order, then the three
