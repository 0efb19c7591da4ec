"""`restyle bench triton`: what Triton costs over the same stage code called in one process.

One run, one photo, one set of weights:
1. Each stage model is called once through tritonclient, in the ensemble's order, each fed
   the real outputs of the ones before (the wiring is read from restyle.pipeline, like the
   ensemble's config); those inputs become each stage's perf_analyzer --input-data.
2. The same restyle/ functions the model.py adapters call, one after another in this process
   (no Triton), repeated: the in-process baseline, whole and up to diffusion ("analysis").
   Side by side with room_restyle called through tritonclient (gRPC, one request at a time, as
   perf_analyzer does at concurrency 1): the two alternate A B B A..., so that the other load on a
   shared CPU, which drifts by 10-20 % over minutes, weighs on both sides alike. The key figures
   and ratios come from this paired measurement.
3. perf_analyzer (gRPC, count_windows) on room_restyle and on each stage at each concurrency:
   latency and throughput against concurrency. Triton's statistics (/v2/models/stats) read before
   and after every ensemble measurement split each composing model's time into queue, compute
   input, infer and output.

The ensemble's analysis time is room_restyle's mean server-side request time less that of
diffusion, quality and postprocess over the paired calls (Triton's statistics): everything
before diffusion, with the ensemble's hand-offs between steps; set against the in-process mean
of the same stages.
Figures on a shared CPU with tiny random weights are for ratios, never absolutes.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restyle import perf
from restyle.pipeline import RESULT_OUTPUTS
from restyle.pipeline import steps as pipeline_steps

STAGES = [step.model for step in pipeline_steps()]
ANALYSIS = STAGES[:STAGES.index("diffusion")]
# --quick: the request's edge, one batched ONNX model and the cheapest stage; the ensemble
# run already covers diffusion.
QUICK_STAGES = ["preprocess", "detection", "edges"]
TIMES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class Settings:
    steps: int = 20
    concurrency: tuple[int, ...] = (1, 2, 4)
    windows: int = 3  # requests per perf_analyzer measurement window
    repeats: int = 5  # in-process runs
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 1
    style: str = "scandinavian"

    @classmethod
    def quick(cls) -> Settings:
        return cls(steps=2, concurrency=(1, 4), windows=2, repeats=3, stages=list(QUICK_STAGES))


# --- 1. stage inputs, from one real run through Triton --------------------------------------

def request_inputs(photo: bytes, s: Settings) -> dict[str, np.ndarray]:
    return {"IMAGE_BYTES": np.frombuffer(photo, dtype=np.uint8), "STYLE": np.array([s.style.encode()], dtype=object),
            "STEPS": np.array([s.steps], dtype=np.int32), "SEED": np.array([s.seed], dtype=np.int64)}


def _infer(client, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        tensor = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    result = client.infer(model, tensors, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
    return {name: result.as_numpy(name) for name in outputs}


def stage_inputs(client, request: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """model -> the inputs it received when the photo went through every stage in turn."""
    tensors = dict(request)
    received = {}
    for step in pipeline_steps():
        received[step.model] = {name: tensors[src] for name, src in step.inputs.items() if src in tensors}
        produced = _infer(client, step.model, received[step.model], list(step.outputs))
        tensors.update({step.outputs[name]: value for name, value in produced.items()})
    return received


def write_input_data(model_inputs: dict[str, np.ndarray], batched: bool, path: Path) -> Path:
    """perf_analyzer's --input-data JSON; a model with a batch axis gets its tensors without it."""
    data = {name: perf.tensor_json(value, dims_without_batch=batched) for name, value in model_inputs.items()}
    path.write_text(json.dumps({"data": [data]}))
    return path


# --- 2. the same stage code in this process ---------------------------------------------------

class InProcess:
    """The restyle/ calls each model.py makes, in the ensemble's order, without Triton."""

    def __init__(self, profile, artifacts: Path, repository: Path):
        from restyle.server import server_env, stage_process_env

        # As the server's stubs run (threads, huge pages): read by torch and onnxruntime when they load.
        env = server_env()
        os.environ.update({name: env[name] for name in stage_process_env()})
        import torch

        from restyle.diffusion import Restyler
        from restyle.onnx_model import OnnxModel
        from restyle.room_classification import RoomClassifier
        from restyle.segmentation import Segmenter

        # On a shared CPU torch's default (a thread per core) was 10x slower here: every parallel
        # region waits for a descheduled thread. Set again in case torch was loaded before.
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        dtype = getattr(torch, profile.dtype)
        self.profile = profile
        self.detector = OnnxModel(repository / "detection" / "1" / "model.onnx", profile.device)
        self.depth = OnnxModel(repository / "depth" / "1" / "model.onnx", profile.device)
        self.segmenter = Segmenter(artifacts / "segmentation" / "sam2.pt", device=profile.device)
        self.classifier = RoomClassifier(artifacts / "room_classifier", profile.device, dtype)
        self.restyler = Restyler.load(artifacts / "diffusion", profile.device, dtype)

    def run(self, photo: bytes, s: Settings) -> dict[str, float]:
        """Seconds per stage for one photo."""
        from restyle.contract import parse_request
        from restyle.depth import prepare, to_map
        from restyle.detection import letterbox, postprocess
        from restyle.edges import canny
        from restyle.imaging import decode_image, encode_jpeg, fit_to_working, restore_aspect
        from restyle.quality import assess

        p, times = self.profile, {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times[stage], clock = now - clock, now

        params = parse_request(style=s.style, steps=s.steps, seed=s.seed)
        original = decode_image(photo)
        image = fit_to_working(original, p.working_long_side, p.size_multiple)
        det_input, lb = letterbox(image, p.detection_size)
        depth_input = prepare(image, p.depth_size)
        (orig_h, orig_w), (work_h, work_w) = original.shape[:2], image.shape[:2]
        lap("preprocess")
        raw = self.detector(images=det_input)["output0"]
        lap("detection")
        found = postprocess(raw, lb, (work_h, work_w), out_scale=orig_w / work_w)
        lap("detection_postprocess")
        _, furniture_mask = self.segmenter.segment(image, found.boxes.reshape(-1, 4), found.furniture)
        lap("segmentation")
        room = self.classifier.classify(image)
        lap("room_classification")
        depth = self.depth(pixel_values=depth_input)["depth"]
        lap("depth")
        edges = canny(image, 100, 200)
        lap("edges")
        params.room_type = room.room_type
        restyled = self.restyler.generate(image, to_map(depth, image.shape[:2]), edges, furniture_mask, params)
        lap("diffusion")
        assess(image, restyled, edges, depth[0])
        lap("quality")
        encode_jpeg(restore_aspect(restyled, (orig_h, orig_w), p.max_output_side))
        to_map(depth, (work_h, work_w))
        lap("postprocess")
        return times


# --- 3. perf_analyzer and Triton's statistics ------------------------------------------------

def server_stats(client) -> dict[str, dict[str, tuple[int, int]]]:
    """model -> {success/queue/compute_*: (count, ns)}, cumulative since the server started."""
    found = {}
    for model in client.get_inference_statistics(as_json=True)["model_stats"]:
        stats = model["inference_stats"]
        found[model["name"]] = {key: (int(stats[key].get("count", 0)), int(stats[key].get("ns", 0)))
                                for key in ("success", *TIMES)}
    return found


def settled_stats(client, before: dict, timeout_s: float = 10.0,
                  read=server_stats) -> dict[str, dict[str, tuple[int, int]]]:
    """read(client) once every model of room_restyle has counted the same requests since `before`.

    Triton records a model's statistics after its response is on the way, so a snapshot taken
    right after the last reply can miss that reply's postprocess and ensemble entries while it
    holds the other stages' (seen: 2 room_restyle requests against 3 diffusion ones, which made
    the analysis share of the means negative)."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = read(client)
        counts = {after[m]["success"][0] - before.get(m, {}).get("success", (0, 0))[0]
                  for m in ("room_restyle", *STAGES) if m in after}
        if len(counts) <= 1 or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def stats_delta(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """model -> mean ms per request of each part, and the request count, over a measurement."""
    delta = {}
    for model, now in after.items():
        count = now["success"][0] - before.get(model, {}).get("success", (0, 0))[0]
        if count <= 0:
            continue
        delta[model] = {"count": count, **{key: (ns - before[model][key][1]) / count / 1e6
                                           for key, (_, ns) in now.items()}}
    return delta


def perf_row(row: dict[str, str]) -> dict[str, float]:
    return {"p50_ms": int(row["p50 latency"]) / 1e3, "p99_ms": int(row["p99 latency"]) / 1e3,
            "throughput": float(row["Inferences/Second"])}


@dataclass
class Result:
    settings: Settings
    inprocess: dict[str, float]  # stage -> median ms
    inprocess_total: float  # median ms of whole runs
    inprocess_analysis: float  # mean ms of the stages before diffusion, per run
    paired: float  # median ms of room_restyle called between the in-process runs
    paired_breakdown: dict[str, dict[str, float]]  # model -> mean ms per part over those calls
    ensemble: dict[int, dict[str, float]]  # concurrency -> p50_ms, p99_ms, throughput (perf_analyzer)
    breakdown: dict[int, dict[str, dict[str, float]]]  # concurrency -> model -> mean ms per part
    stages: dict[str, dict[int, dict[str, float]]]  # stage model -> concurrency -> perf row

    def keys(self) -> dict[str, float]:
        """The flat figures `--json` writes."""
        low, high = min(self.ensemble), max(self.ensemble)
        server = self.paired_breakdown
        # Means on both sides: Triton's statistics hold sums, not percentiles.
        analysis = server["room_restyle"]["success"] - sum(server[m]["success"] for m in STAGES[len(ANALYSIS):])
        return {"ensemble_p50_ms": round(self.paired, 1), "inprocess_p50_ms": round(self.inprocess_total, 1),
                "ensemble_vs_inprocess_ratio": round(self.paired / self.inprocess_total, 3),
                "analysis_vs_inprocess_ratio": round(analysis / self.inprocess_analysis, 3),
                "throughput_c1": round(self.ensemble[low]["throughput"], 3),
                "throughput_c4": round(self.ensemble[high]["throughput"], 3)}


def measure(grpc_url: str, photo: bytes, profile, artifacts: Path, repository: Path, work_dir: Path, s: Settings,
            status=lambda text: None) -> Result:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_url)
    work_dir.mkdir(parents=True, exist_ok=True)
    status("one photo through every stage (perf_analyzer's input data)")
    received = stage_inputs(client, request_inputs(photo, s))
    data = {}
    for model in ("room_restyle", *s.stages):
        batched = client.get_model_config(model, as_json=True)["config"].get("max_batch_size", 0) > 0
        inputs = request_inputs(photo, s) if model == "room_restyle" else received[model]
        data[model] = write_input_data(inputs, batched, work_dir / f"{model}.json")

    status("in-process: loading the stage models")
    local = InProcess(profile, artifacts, repository)
    request, outputs = request_inputs(photo, s), [t.name for t in RESULT_OUTPUTS]

    def remote() -> float:
        start = time.perf_counter()
        _infer(client, "room_restyle", request, outputs)
        return time.perf_counter() - start

    start = server_stats(client)
    local.run(photo, s), remote()  # warm-up: first calls allocate
    runs, calls = [], []
    before = settled_stats(client, start)
    for i in range(s.repeats):
        status(f"side by side: in-process and room_restyle, pair {i + 1} of {s.repeats}")
        pair = (lambda: runs.append(local.run(photo, s)), lambda: calls.append(remote()))
        for call in pair if i % 2 == 0 else pair[::-1]:
            call()
    paired_breakdown = stats_delta(before, settled_stats(client, before))
    inprocess_ms = {stage: statistics.median(r[stage] for r in runs) * 1e3 for stage in STAGES}
    inprocess_total = statistics.median(sum(r.values()) for r in runs) * 1e3
    analysis_ms = statistics.mean(sum(r[stage] for stage in ANALYSIS) for r in runs) * 1e3
    ensemble, breakdown = {}, {}
    for c in s.concurrency:
        status(f"perf_analyzer: room_restyle at concurrency {c}")
        before = server_stats(client)
        row = perf.measure("room_restyle", grpc_url, data["room_restyle"], work_dir / f"room_restyle_c{c}.csv",
                           concurrency=c, windows=s.windows)
        breakdown[c] = stats_delta(before, settled_stats(client, before))
        ensemble[c] = perf_row(row)
    stages = {}
    for model in s.stages:
        for c in s.concurrency:
            status(f"perf_analyzer: {model} at concurrency {c}")
            row = perf.measure(model, grpc_url, data[model], work_dir / f"{model}_c{c}.csv", concurrency=c,
                               windows=s.windows)
            stages.setdefault(model, {})[c] = {**perf_row(row), **{
                part: int(row[column]) / 1e3 for part, column in zip(TIMES, (
                    "Server Queue", "Server Compute Input", "Server Compute Infer", "Server Compute Output"))}}
    return Result(s, inprocess_ms, inprocess_total, analysis_ms, statistics.median(calls) * 1e3, paired_breakdown,
                  ensemble, breakdown, stages)


# --- report -------------------------------------------------------------------------------------

def machine() -> str:
    return (f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs (shared), "
            f"{datetime.date.today().isoformat()}")


def tables(result: Result) -> list:
    from rich.table import Table

    s = result.settings
    keys = Table(title=f"room_restyle vs in-process, {s.steps} steps ({s.repeats} of each, alternating; medians; "
                       "throughput from perf_analyzer)")
    keys.add_column("figure")
    keys.add_column("value", justify="right")
    for key, value in result.keys().items():
        keys.add_row(key, str(value))

    levels = list(s.concurrency)
    per_stage = Table(title="per stage: in-process median vs the stage model alone through Triton (perf_analyzer "
                            "p50, ms; throughput /s)")
    for col in ("stage", "in-process", *(f"p50 c{c}" for c in levels), *(f"/s c{c}" for c in levels)):
        per_stage.add_column(col, justify="right")
    for stage in STAGES:
        rows = result.stages.get(stage, {})
        per_stage.add_row(stage, f"{result.inprocess[stage]:.1f}",
                          *(f"{rows[c]['p50_ms']:.1f}" if c in rows else "-" for c in levels),
                          *(f"{rows[c]['throughput']:.1f}" if c in rows else "-" for c in levels))

    out = [keys, per_stage]
    measured = {"side by side with in-process": result.paired_breakdown,
                **{f"perf_analyzer at concurrency {c}": result.breakdown[c] for c in levels}}
    for label, breakdown in measured.items():
        parts = Table(title=f"server side inside room_restyle, {label} (Triton statistics, mean ms per request)")
        for col in ("model", "requests", *TIMES, "request total"):
            parts.add_column(col, justify="right")
        for model in ("room_restyle", *STAGES, "diffusion_engine"):
            if model in breakdown:
                row = breakdown[model]
                parts.add_row(model, str(row["count"]), *(f"{row[t]:.1f}" for t in TIMES), f"{row['success']:.1f}")
        out.append(parts)
    return out


def plot(result: Result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(result.ensemble)
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4))
    lat.plot(levels, [result.ensemble[c]["p50_ms"] for c in levels], "o-", label="room_restyle p50")
    lat.plot(levels, [result.ensemble[c]["p99_ms"] for c in levels], "o--", label="room_restyle p99")
    lat.axhline(result.inprocess_total, color="gray", linestyle=":", label="in-process, one request")
    lat.set(xlabel="concurrency", ylabel="latency (ms)", xticks=levels, title="latency")
    thr.plot(levels, [result.ensemble[c]["throughput"] for c in levels], "o-", label="room_restyle")
    thr.axhline(1e3 / result.inprocess_total, color="gray", linestyle=":", label="in-process, serial")
    thr.set(xlabel="concurrency", ylabel="requests / s", xticks=levels, title="throughput")
    for ax in (lat, thr):
        ax.legend()
        ax.set_ylim(bottom=0)
    fig.suptitle(f"Triton ensemble vs in-process, tiny random weights, {result.settings.steps} steps; {machine()}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(profile_name: str = "tiny", *, quick: bool = False, url: str | None = None, photo: bytes | None = None,
        steps: int | None = None, stages: list[str] | None = None, json_path: Path | None = None,
        plot_path: Path | None = None) -> dict[str, float]:
    """The whole benchmark: a tritonserver on free ports unless `url` (gRPC HOST:PORT) names one."""
    import tempfile

    import cv2
    from rich.console import Console

    from restyle import server
    from restyle.profiles import get_profile
    from restyle.samples import synthetic_room
    from restyle.server_ports import free_port
    from restyle.settings import get_settings

    console = Console()
    s = Settings.quick() if quick else Settings()
    if steps:
        s.steps = steps
    if stages:
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
        s.stages = stages
    profile, settings = get_profile(profile_name), get_settings()
    photo = photo or cv2.imencode(".jpg", synthetic_room()[:, :, ::-1])[1].tobytes()
    console.print(f"machine: {machine()}; profile {profile.name}; steps {s.steps}; concurrency "
                  f"{', '.join(map(str, s.concurrency))}; stages {', '.join(s.stages)}")
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as tmp, console.status("starting") as shown:
        srv = None
        if url is None:
            shown.update("starting tritonserver")
            srv = server.start(profile.name, free_port(), free_port(), free_port(), run_dir=Path(tmp) / "run")
            url = srv.grpc_url
        try:
            result = measure(url, photo, profile, settings.artifacts_dir / profile.name, settings.model_repository,
                             Path(tmp) / "perf", s, status=shown.update)
        finally:
            if srv:
                srv.stop()
    for table in tables(result):
        console.print(table)
    keys = result.keys()
    if json_path:
        json_path.write_text(json.dumps(keys, indent=2) + "\n")
    if plot_path:
        console.print(f"plot: {plot(result, plot_path)}")
    return keys
