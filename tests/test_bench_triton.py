"""`restyle bench triton` and `restyle perf-analyzer`: they run and say what they should; no timing is asserted."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from restyle import bench_triton, perf
from restyle_cli.main import app

RESTYLE = str(Path(sys.executable).parent / "restyle")
KEYS = {"ensemble_p50_ms", "inprocess_p50_ms", "ensemble_vs_inprocess_ratio", "analysis_vs_inprocess_ratio",
        "throughput_c1", "throughput_c4"}


def test_bench_triton_writes_every_key(triton_server, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    done = subprocess.run([RESTYLE, "bench", "triton", "--quick", "--url", triton_server.grpc_url, "--steps", "1",
                           "--stages", "edges", "--json", str(out), "--plot", str(png)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert set(figures) == KEYS
    assert all(isinstance(v, (int, float)) and v > 0 for v in figures.values())
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "server side inside room_restyle" in done.stdout  # the per-model breakdown is printed


def test_statistics_are_read_once_every_model_has_counted_each_request(triton_server):
    """The breakdown's means (and the analysis ratio) need the same requests on every model: Triton
    counts a model's statistics after its reply is sent, so a snapshot right after the reply can lag."""
    import cv2
    import tritonclient.grpc as grpcclient

    from restyle.pipeline import RESULT_OUTPUTS
    from restyle.samples import synthetic_room

    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    request = bench_triton.request_inputs(cv2.imencode(".jpg", synthetic_room())[1].tobytes(),
                                          bench_triton.Settings(steps=1))
    before = bench_triton.server_stats(client)
    for _ in range(3):
        bench_triton._infer(client, "room_restyle", request, [t.name for t in RESULT_OUTPUTS])
    delta = bench_triton.stats_delta(before, bench_triton.settled_stats(client, before))
    assert {model: delta[model]["count"] for model in ("room_restyle", *bench_triton.STAGES)} == \
        dict.fromkeys(("room_restyle", *bench_triton.STAGES), 3)


def test_statistics_wait_for_a_model_that_has_not_counted_the_last_request_yet():
    models = ("room_restyle", *bench_triton.STAGES)

    def stats(count: int, lagging: tuple[str, ...] = ()) -> dict:
        return {m: {"success": (count - (m in lagging), 0)} for m in models}

    reads = iter([stats(3, lagging=("room_restyle", "postprocess")), stats(3, lagging=("room_restyle",)), stats(3)])
    assert bench_triton.settled_stats(None, stats(0), read=lambda _: next(reads)) == stats(3)
    # a model that never catches up costs the timeout, not a hang
    assert bench_triton.settled_stats(None, stats(0), timeout_s=0.2, read=lambda _: stats(3, lagging=("quality",))) == \
        stats(3, lagging=("quality",))


def test_perf_analyzer_passes_flags_through(triton_server, tmp_path):
    version = subprocess.run([RESTYLE, "perf-analyzer", "--version"], check=False, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "Perf Analyzer Version 2.51" in version.stdout + version.stderr

    # a tiny run against one stage (its optional thresholds left out; any spread counts as stable, as in
    # restyle.perf: the point is the flags), report written where asked
    csv, data = tmp_path / "edges.csv", tmp_path / "edges.json"
    data.write_text(json.dumps({"data": [{"IMAGE": perf.tensor_json(np.zeros((64, 64, 3), np.uint8))}]}))
    run = subprocess.run([RESTYLE, "perf-analyzer", "-m", "edges", "-u", triton_server.grpc_url, "-i", "grpc",
                          "--input-data", str(data), "--measurement-mode", "count_windows",
                          "--measurement-request-count", "2", "--stability-percentage", "1000", "-f", str(csv)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert csv.read_text().startswith("Concurrency")


def test_bad_flag_gets_perf_analyzers_own_error():
    done = subprocess.run([RESTYLE, "perf-analyzer", "--no-such-flag"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "unrecognized option '--no-such-flag'" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_missing_libb64_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(perf, "LIBB64", "libb64-not-installed.so.0d")
    result = CliRunner().invoke(app, ["perf-analyzer", "--version"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "perf_analyzer needs libb64-not-installed.so.0d: apt-get install libb64-0d"]
