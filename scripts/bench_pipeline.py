"""Benchmark the pipeline, side by side in one run: `python scripts/bench_pipeline.py [--url HOST]`.

1. Batching: the exported detection and depth graphs, N images as N batch-1 runs vs one
   batch-N run (onnxruntime in this process, the profile's artefacts).
2. Serving: the same request through the ensemble over HTTP and through the streaming model
   over gRPC; end-to-end medians, their ratio, and the median of every stage (the stream's
   TIMINGS).

perf_analyzer on the ensemble and each stage against the same code in-process is
`restyle bench triton` (restyle/bench_triton.py); `make bench` runs both.

Starts a tritonserver for --profile on free ports unless --url names a running one (HTTP and
gRPC ports given as --url HOST:HTTP --grpc-port P). Say which weights a figure came from:
tiny and --random-weights builds measure speed only, never quality; on a shared 2-core CPU
read the ratios, not the absolutes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from restyle import server
from restyle.batching import run_batched
from restyle.bench_triton import machine
from restyle.client import RestyleRequest, TritonRestyleClient
from restyle.onnx_model import OnnxModel
from restyle.profiles import get_profile
from restyle.samples import synthetic_room
from restyle.server_ports import free_port
from restyle.settings import get_settings

console = Console()


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_batching(artifacts: Path, device: str, batch: int, runs: int) -> Table:
    table = Table(title=f"onnxruntime, {batch} images: {batch} x batch 1 vs 1 x batch {batch} (median of {runs})")
    for col in ("model", f"{batch} x batch 1 (ms)", f"batch {batch} (ms)", "speed-up"):
        table.add_column(col, justify="right")
    rng = np.random.default_rng(0)
    for name, tensor in (("detection", "images"), ("depth", "pixel_values")):
        model = OnnxModel(artifacts / name / "model.onnx", device)
        shape = [int(d) for d in model.input_shape[1:]]
        requests = [{tensor: rng.random((1, *shape), dtype=np.float32)} for _ in range(batch)]
        model(**requests[0])  # warm-up: first runs allocate
        single = median_s(lambda: [model(**r) for r in requests], runs)
        batched = median_s(lambda: run_batched(model, requests), runs)
        table.add_row(name, f"{single * 1e3:.1f}", f"{batched * 1e3:.1f}", f"{single / batched:.2f}x")
    return table


def bench_serving(http_url: str, grpc_url: str, photo: bytes, steps: int, runs: int) -> list[Table]:
    req = RestyleRequest(photo, "scandinavian", seed=1, steps=steps)
    ensemble = TritonRestyleClient(http_url, protocol="http")
    stream = TritonRestyleClient(grpc_url)
    ensemble.infer(req)  # warm-up: first calls load lazily-initialised state
    stage_times: dict[str, list[float]] = {}

    def streamed():
        for stage, seconds in stream.restyle(req).timings.items():
            stage_times.setdefault(stage, []).append(seconds)

    plain = median_s(lambda: ensemble.infer(req), runs)
    progress = median_s(streamed, runs)
    total = Table(title=f"end to end, {steps} denoising steps (median of {runs})")
    for col in ("entry point", "median (s)", "vs ensemble"):
        total.add_column(col, justify="right")
    total.add_row("room_restyle (ensemble, HTTP)", f"{plain:.2f}", "1.00x")
    total.add_row("room_restyle_stream (BLS, gRPC, progress)", f"{progress:.2f}", f"{progress / plain:.2f}x")
    stages = Table(title="per stage inside room_restyle_stream (median)")
    for col in ("stage", "median (ms)", "share"):
        stages.add_column(col, justify="right")
    medians = {stage: statistics.median(v) for stage, v in stage_times.items()}
    for stage, seconds in medians.items():
        stages.add_row(stage, f"{seconds * 1e3:.0f}", f"{seconds / sum(medians.values()):.0%}")
    return [total, stages]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--url", help="HOST:PORT (HTTP) of a running server; default: start one")
    parser.add_argument("--grpc-port", type=int, default=8001, help="its gRPC port, with --url")
    parser.add_argument("--photo", type=Path, help="room photo (default: a synthetic room)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    artifacts = get_settings().artifacts_dir / profile.name
    photo = args.photo.read_bytes() if args.photo else cv2.imencode(".jpg", synthetic_room()[:, :, ::-1])[1].tobytes()
    console.print(f"machine: {machine()}; profile {profile.name} "
                  f"({profile.description}); weights: {_weights(artifacts)}")
    console.print(bench_batching(artifacts, profile.device, args.batch, args.runs))
    srv = None
    if args.url:
        http_url, grpc_url = args.url, f"{args.url.rsplit(':', 1)[0]}:{args.grpc_port}"
    else:
        with console.status("starting tritonserver"):
            srv = server.start(profile.name, free_port(), free_port(), free_port())
        http_url, grpc_url = srv.http_url, srv.grpc_url
    try:
        for table in bench_serving(http_url, grpc_url, photo, args.steps, args.runs):
            console.print(table)
    finally:
        if srv:
            srv.stop()
    return 0


def _weights(artifacts: Path) -> str:
    weights = json.loads((artifacts / "manifest.json").read_text())["weights"]
    return f"{weights} (speed only, never quality)" if weights.startswith("random") else weights


if __name__ == "__main__":
    sys.exit(main())
