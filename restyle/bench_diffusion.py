"""`restyle bench diffusion` and `restyle bench gpu`: the engine in each speed mode against a bare
diffusers StableDiffusionControlNetPipeline with both ControlNets (same weights, same size, its
own defaults, 20 steps), in one run, round-robin so drift in a shared machine's load hits every
contender alike; medians of the repeats.

Torch, diffusers and the engine only: no tritonserver, ultralytics or sam2, so `bench gpu` runs
on a GPU host from the wheels scripts/gpu_wheels.sh collects (BENCHMARKS.md says how).
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from restyle.contract import SPEEDS, parse_request
from restyle.samples import furniture_mask, synthetic_scene
from restyle.speed import CUTS, Cuts

BASELINE_STEPS = 20
KEYS = ("baseline_ms", "quality_ms", "balanced_ms", "fast_ms", "quality_vs_baseline_ratio",
        "fast_vs_quality_ratio", "evals_quality", "evals_balanced", "evals_fast")
GPU_KEYS = ("gpu_name", "compile", "baseline_ms", "quality_ms", "balanced_ms", "fast_ms", "quality_vs_baseline_ratio",
            "fast_vs_quality_ratio", "peak_mem_mb",
            # the same engine's quality mode with torch.compile set aside, round-robin with the rest:
            # what the compiled code gains over eager, measured side by side (1.0 when nothing is compiled)
            "quality_eager_ms", "compile_speedup",
            # cuDNN's autotuner on (cudnn_tuned) against the default, round-robin, and that pair's peak
            # memory (its workspace): whether the t4 profile should turn it on (it does not yet)
            "quality_cudnn_benchmark_ms", "cudnn_benchmark_speedup", "peak_mem_mb_cudnn_benchmark",
            # each mode's first call: torch.compile's graphs for this size, then one run
            "quality_first_ms", "balanced_first_ms", "fast_first_ms")
# `bench compile`: what a compiled engine's start costs and whether it then serves like eager
COMPILE_KEYS = ("backend", "scope", "warmup_s", "graphs", "graphs_after", "gave_up", "max_diff", "evals_equal")
STYLE, ROOM = "modern", "living room"
# Each balanced lever alone, then together (`--levers`): what the defaults in restyle.speed rest on.
LEVERS = {
    "none (quality)": Cuts(),
    "control_end=0.6": Cuts(control_end=0.6),
    "control_end=0.4": Cuts(control_end=0.4),
    "cfg_end=0.5": Cuts(cfg_end=0.5),
    "cfg_end=0.3": Cuts(cfg_end=0.3),
    "cache_interval=2": Cuts(cache_interval=2),
    "cache_interval=3": Cuts(cache_interval=3),
    "balanced": CUTS["balanced"],
}


@dataclass
class Scene:
    """The photo and control maps every contender gets."""
    image: np.ndarray
    depth: np.ndarray
    edges: np.ndarray

    @classmethod
    def make(cls, size: int) -> "Scene":
        return cls(*synthetic_scene(size, size))


def _rgb(gray: np.ndarray):
    from PIL import Image
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


def load_baseline(model_dir: Path, device: str, dtype: torch.dtype):
    """Plain diffusers, as its documentation loads it: no speed lever of this project."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    nets = [ControlNetModel.from_pretrained(model_dir / name, torch_dtype=dtype)
            for name in ("controlnet_depth", "controlnet_canny")]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        model_dir / "sd", controlnet=MultiControlNetModel(nets), safety_checker=None,
        requires_safety_checker=False, torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def baseline_call(pipe, scene: Scene) -> Callable[[], object]:
    from restyle.diffusion import fit_prompt
    from restyle.styles import build_prompt

    # the engine's prompts: same tokens to encode, and no truncation warning from diffusers per call
    positive, negative = (fit_prompt(pipe.tokenizer, text) for text in build_prompt(STYLE, ROOM))
    h, w = scene.image.shape[:2]
    return lambda: pipe(positive, negative_prompt=negative, image=[_rgb(scene.depth), _rgb(scene.edges)],
                        height=h, width=w, num_inference_steps=BASELINE_STEPS,
                        generator=torch.Generator("cpu").manual_seed(0), output_type="np")


def engine_call(engine, scene: Scene, speed: str, cuts: Cuts | None = None,
                evals: Counter | None = None, **overrides) -> Callable[[], np.ndarray]:
    params = parse_request(style=STYLE, room_type=ROOM, seed=0, speed=speed, **overrides)
    return lambda: engine.generate(scene.image, scene.depth, scene.edges, None, params, evals=evals, cuts=cuts)


def medians(calls: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None] = lambda: None,
            progress: Callable[[str], None] = lambda _: None,
            clock: Callable[[], float] = time.perf_counter, first_ms: dict[str, float] | None = None) -> dict[str, float]:
    """Median milliseconds of each call (wall clock unless told), measured round-robin after one
    warm-up each; ``first_ms`` receives the warm-up calls' milliseconds."""
    def timed(call: Callable[[], object]) -> float:
        sync()
        t0 = clock()
        call()
        sync()
        return (clock() - t0) * 1000.0

    for name, call in calls.items():
        progress(f"warm-up {name}")
        ms = timed(call)
        if first_ms is not None:
            first_ms[name] = ms
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(repeats):
        for name, call in calls.items():
            progress(f"repeat {r + 1}/{repeats} {name}")
            times[name].append(timed(call))
    out = {name: statistics.median(values) for name, values in times.items()}
    # said as soon as known: a run cut short (a device call's time limit) keeps these in its log
    progress("medians: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in out.items()))
    return out


def eager(call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with every torch.compile'd function in it run eagerly (dynamo's force_eager stance)."""
    return torch.compiler.set_stance("force_eager")(call)


def cudnn_tuned(call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with cuDNN's autotuner on (torch.backends.cudnn.benchmark): each convolution's
    fastest algorithm, timed at the first call of each shape, for more workspace memory."""
    def tuned():
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            return call()
        finally:
            torch.backends.cudnn.benchmark = before
    return tuned


def count_evals(engine, scene: Scene, speed: str, cuts: Cuts | None = None) -> int:
    evals: Counter = Counter()
    engine_call(engine, scene, speed, cuts, evals)()
    return evals.total()


def structure(engine, scene: Scene, speed: str, cuts: Cuts | None = None, **overrides) -> float:
    """restyle.quality's structure-preservation score of one result."""
    from restyle.quality import assess

    result = engine_call(engine, scene, speed, cuts, **overrides)()
    return assess(scene.image, result, scene.edges, scene.depth[None].astype(np.float32) / 255.0).score


def _ratios(ms: dict[str, float]) -> dict[str, float]:
    return {"quality_vs_baseline_ratio": round(ms["quality"] / ms["baseline"], 3),
            "fast_vs_quality_ratio": round(ms["fast"] / ms["quality"], 3)}


def run_diffusion(model_dir: Path, *, size: int, repeats: int, progress=lambda _: None) -> dict:
    """The tiny (CPU) benchmark: the figures of KEYS."""
    from restyle.diffusion import Restyler

    scene = Scene.make(size)
    engine = Restyler.load(model_dir, "cpu", torch.float32)
    baseline = load_baseline(model_dir, "cpu", torch.float32)
    calls = {"baseline": baseline_call(baseline, scene)}
    calls.update({speed: engine_call(engine, scene, speed) for speed in SPEEDS})
    ms = medians(calls, repeats, progress=progress)
    result = {f"{name}_ms": round(value, 1) for name, value in ms.items()}
    result.update(_ratios(ms))
    result.update({f"evals_{speed}": count_evals(engine, scene, speed) for speed in SPEEDS})
    return {key: result[key] for key in KEYS}


def compile_probes(long_side: int) -> list[tuple[tuple[int, int], str, int, str]]:
    """Requests after the warm-up at (3:4, 4:3) of ``long_side``: other sizes (2:1, 1:2, square),
    speeds, step counts and both mask modes; (size, speed, steps, mode)."""
    first, half, square = (long_side * 3 // 4, long_side), long_side // 2, long_side * 3 // 4
    return [((half, long_side), "quality", 2, "full"), ((long_side, half), "balanced", 7, "full"),
            ((square, square), "fast", 3, "full"), (first, "balanced", 4, "furniture"),
            (first, "quality", 2, "keep_furniture")]


def run_compile(model_dir: Path, *, scope: str, backend: str, long_side: int, progress=lambda _: None) -> dict:
    """The engine compiled with ``backend`` over ``scope``: warm_up() at the 3:4 and 4:3 sizes of
    ``long_side`` (timed, its graphs counted), then compile_probes() each against the eager engine:
    graphs compiled after the warm-up (0 expected), functions dynamo gave up on (their graphs used
    up: they then run eagerly), the largest pixel difference (1/255 expected) and whether the
    denoiser evaluations counted match. CPU, fp32."""
    import logging

    from restyle.diffusion import SIZE_MULTIPLE, Restyler, warmup_sizes

    graphs, gave_up = [], []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    class GaveUp(logging.Handler):
        def emit(self, record):
            if "recompile_limit" in record.getMessage():
                gave_up.append(record.getMessage())

    torch._dynamo.reset()  # count from nothing: cache entries live on the code objects
    eager = Restyler.load(model_dir, "cpu", torch.float32)
    engine = Restyler.load(model_dir, "cpu", torch.float32, compile_backend=counting, compile_scope=scope)
    dynamo_log, handler = logging.getLogger("torch._dynamo.convert_frame"), GaveUp()
    dynamo_log.addHandler(handler)
    try:
        t0 = time.perf_counter()
        engine.warm_up(warmup_sizes(long_side, SIZE_MULTIPLE), report=progress)
        warmup_s, warmed, worst, same_evals = time.perf_counter() - t0, len(graphs), 0, True
        for (h, w), speed, steps, mode in compile_probes(long_side):
            image, depth, edges = synthetic_scene(h, w)
            mask = furniture_mask(h, w)
            params = parse_request(style=STYLE, room_type=ROOM, seed=5, speed=speed, steps=steps, mode=mode)
            (want, want_evals), (got, got_evals) = ((r.generate(image, depth, edges, mask, params, evals=c), c)
                                                    for r, c in ((eager, Counter()), (engine, Counter())))
            worst = max(worst, int(np.abs(want.astype(int) - got.astype(int)).max()))
            same_evals &= want_evals == got_evals
            progress(f"{speed} {steps} steps {mode} at {w}x{h}: max diff {worst}, graphs {len(graphs)}")
    finally:
        dynamo_log.removeHandler(handler)
    return {"backend": backend, "scope": scope, "warmup_s": round(warmup_s, 1), "graphs": warmed,
            "graphs_after": len(graphs) - warmed, "gave_up": len(gave_up), "max_diff": worst,
            "evals_equal": same_evals}


def run_levers(model_dir: Path, *, size: int, repeats: int, progress=lambda _: None) -> list[dict]:
    """Each balanced lever on its own: CPU time, evaluations, structure score (20 UniPC steps).
    CPU time of the process, not wall time: a lever saves a few tens of percent, less than a
    shared machine's load swings the wall clock; with one torch thread it is the work done."""
    from restyle.diffusion import Restyler

    scene = Scene.make(size)
    engine = Restyler.load(model_dir, "cpu", torch.float32)
    ms = medians({name: engine_call(engine, scene, "quality", cuts) for name, cuts in LEVERS.items()},
                 repeats, progress=progress, clock=time.process_time)
    return [{"lever": name, "cpu_ms": round(ms[name], 1), "evals": count_evals(engine, scene, "quality", cuts),
             "structure": round(structure(engine, scene, "quality", cuts), 4)} for name, cuts in LEVERS.items()]


def check_gpu() -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("restyle bench gpu needs a CUDA GPU, and torch sees none here "
                           "(`--device cpu` rehearses the same run on tiny weights)")


def run_gpu(model_dir: Path, *, size: int, repeats: int, compile_backend: str | None,
            compile_scope: str = "blocks", device: str = "cuda", progress=lambda _: None) -> dict:
    """t4 architectures with random full-size fp16 weights on whatever CUDA GPU is here: the
    figures of GPU_KEYS. Baseline and engine are measured one after the other, each with the
    GPU to itself, so each peak memory is its own. On ``device="cpu"`` (no memory figure) the
    very same run, fp16 and channels_last included, rehearses a host's install and this code on
    tiny weights."""
    from restyle.diffusion import Restyler

    cuda = device == "cuda"
    if cuda:
        check_gpu()
    dtype, scene = torch.float16, Scene.make(size)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    peaks: dict[str, float | None] = {}
    first: dict[str, float] = {}

    def measured(name: str, calls: dict) -> dict[str, float]:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        ms = medians(calls, repeats, sync, progress, first_ms=first)
        peaks[name] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        return ms

    baseline = load_baseline(model_dir, device, dtype)
    ms = measured("baseline", {"baseline": baseline_call(baseline, scene)})
    del baseline
    engine = Restyler.load(model_dir, device, dtype, compile_backend=compile_backend, compile_scope=compile_scope,
                           channels_last=True)
    calls = {speed: engine_call(engine, scene, speed) for speed in SPEEDS}
    calls["quality_eager"] = eager(calls["quality"])
    ms.update(measured("engine", calls))
    # apart, so that the engine's peak above is the served configuration's (autotuner off)
    tuned = measured("cudnn_benchmark", {"quality_untuned": calls["quality"],
                                         "quality_cudnn_benchmark": cudnn_tuned(calls["quality"])})
    if cuda:
        progress(f"peak memory: baseline {peaks['baseline']:.0f} MiB, engine {peaks['engine']:.0f} MiB, "
                 f"with cuDNN's autotuner {peaks['cudnn_benchmark']:.0f} MiB")
    result = {"gpu_name": torch.cuda.get_device_name() if cuda else "cpu",
              "peak_mem_mb": round(peaks["engine"]) if cuda else None,
              "compile": f"{compile_backend}/{compile_scope}" if compile_backend else "none"}
    result.update({f"{name}_ms": round(value, 1) for name, value in ms.items()})
    result.update({f"{name}_first_ms": round(value, 1) for name, value in first.items()})
    result.update(_ratios(ms))
    result["compile_speedup"] = round(ms["quality_eager"] / ms["quality"], 3)
    result["quality_cudnn_benchmark_ms"] = round(tuned["quality_cudnn_benchmark"], 1)
    result["cudnn_benchmark_speedup"] = round(tuned["quality_untuned"] / tuned["quality_cudnn_benchmark"], 3)
    result["peak_mem_mb_cudnn_benchmark"] = round(peaks["cudnn_benchmark"]) if cuda else None
    return {key: result[key] for key in GPU_KEYS}


def plot(result: dict, path: Path, title: str) -> None:
    """A bar chart of the median time per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["baseline", *SPEEDS]
    values = [result[f"{name}_ms"] / 1000.0 for name in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(["bare diffusers\n(20 steps)", *SPEEDS], values, color=["#999", "#1f77b4", "#2ca02c", "#ff7f0e"])
    for bar, name in zip(bars, names):
        evals = result.get(f"evals_{name}")
        label = f"{bar.get_height():.2f} s" + (f"\n{evals} evals" if evals else "")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("median seconds per image")
    ax.set_title(title, fontsize=9)
    ax.margins(y=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
