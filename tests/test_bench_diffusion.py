"""`restyle bench diffusion` / `compile` / `gpu` run and write every key (never a timing checked)."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from export import gpu_memory
from restyle.bench_diffusion import COMPILE_KEYS, GPU_KEYS, KEYS, LEVERS, cudnn_tuned, eager, medians
from restyle_cli.bench import bench_app


@pytest.fixture(scope="module")
def runner(tiny_artifacts):
    return CliRunner()


def test_bench_diffusion_writes_every_key(runner, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = runner.invoke(bench_app, ["diffusion", "--size", "64", "--repeats", "1", "--json", str(out),
                                       "--plot", str(png)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert tuple(figures) == KEYS
    assert all(figures[k] > 0 for k in KEYS)
    assert (figures["evals_quality"], figures["evals_fast"]) == (120, 12)  # 20 steps x 2 x 3 models; 4 x 1 x 3
    assert figures["evals_fast"] < figures["evals_balanced"] < figures["evals_quality"]
    assert png.read_bytes().startswith(b"\x89PNG")


def test_bench_diffusion_takes_a_model_folder(runner, tiny_artifacts, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(bench_app, ["diffusion", "--model-dir", str(tiny_artifacts / "diffusion"), "--size", "64",
                                       "--repeats", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert tuple(json.loads(out.read_text())) == KEYS

    result = runner.invoke(bench_app, ["diffusion", "--model-dir", str(tmp_path), "--json", str(out)])
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # the console wraps long lines
    assert f"{tmp_path} is missing or predates the speed modes" in said and "build_diffusion" in said


def test_bench_diffusion_levers(runner, tmp_path):
    out = tmp_path / "levers.json"
    result = runner.invoke(bench_app, ["diffusion", "--size", "64", "--repeats", "1", "--levers", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["lever"] for r in rows] == list(LEVERS)
    evals = {r["lever"]: r["evals"] for r in rows}
    assert all(evals[name] < evals["none (quality)"] for name in LEVERS if name != "none (quality)")
    assert all(0 <= r["structure"] <= 1 for r in rows)


def test_bench_compile_writes_every_key(runner, tmp_path):
    """The tracing-only backend, small sizes: the command's wiring (its protocol is tested with both
    scopes in tests/test_speed_modes.py)."""
    out = tmp_path / "compile.json"
    result = runner.invoke(bench_app, ["compile", "--scope", "blocks", "--backend", "aot_eager", "--long-side", "64",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert tuple(figures) == COMPILE_KEYS
    assert (figures["backend"], figures["scope"], figures["graphs_after"], figures["gave_up"]) == \
        ("aot_eager", "blocks", 0, 0)
    assert figures["warmup_s"] > 0 and figures["graphs"] > 0 and figures["evals_equal"] is True

    result = runner.invoke(bench_app, ["compile", "--scope", "layers"])
    assert result.exit_code == 2
    assert "--scope 'layers': choose one of t4, model, blocks" in " ".join(result.output.split())


def test_medians_keep_the_first_call_apart():
    """The warm-up call (on a GPU: torch.compile's graphs, then a run) is reported on its own and left
    out of the medians."""
    now = [0.0]
    seconds = {"a": iter([5.0, 1.0, 2.0, 3.0]), "b": iter([9.0, 4.0, 4.0, 6.0])}
    calls = {name: (lambda it=it: now.__setitem__(0, now[0] + next(it))) for name, it in seconds.items()}
    first = {}
    assert medians(calls, 3, clock=lambda: now[0], first_ms=first) == {"a": 2000.0, "b": 4000.0}
    assert first == {"a": 5000.0, "b": 9000.0}


def test_eager_sets_compiled_code_aside():
    """`bench gpu`'s quality_eager_ms runs the compiled engine through `eager`: no graph may be made."""
    import torch

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    double = torch.compile(lambda x: x * 2, backend=counting)
    x = torch.ones(3)
    assert torch.equal(eager(lambda: double(x))(), x * 2) and graphs == []
    assert torch.equal(double(x), x * 2) and len(graphs) == 1


def test_cudnn_tuned_turns_the_autotuner_on_for_its_call_only():
    """`bench gpu`'s quality_cudnn_benchmark_ms: the flag is on during the call, and back as it was
    after it, also when the call raises (the other contenders run with the default)."""
    import torch

    seen = []
    assert torch.backends.cudnn.benchmark is False
    assert cudnn_tuned(lambda: seen.append(torch.backends.cudnn.benchmark) or "out")() == "out"

    def failing():
        seen.append(torch.backends.cudnn.benchmark)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cudnn_tuned(failing)()
    assert seen == [True, True] and torch.backends.cudnn.benchmark is False


def test_bench_gpu_refuses_clearly_without_cuda(runner, tmp_path):
    result = runner.invoke(bench_app, ["gpu", "--json", str(tmp_path / "gpu.json")])
    assert result.exit_code == 2
    assert "needs a CUDA GPU" in result.output and "--device cpu" in result.output
    assert not (tmp_path / "gpu.json").exists()


def test_bench_gpu_rehearses_its_whole_run_on_the_cpu(runner, tmp_path):
    """`--device cpu`: the code a GPU session runs (its own random build, baseline, compiled engine in
    every mode), on tiny weights, so a host's install is checked before GPU minutes are spent."""
    out = tmp_path / "gpu.json"
    result = runner.invoke(bench_app, ["gpu", "--device", "cpu", "--size", "64", "--repeats", "1",
                                       "--compile", "aot_eager", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "building random tiny weights" in result.output and "not a figure" in result.output
    # each side's medians are in the log as soon as measured (a device call cut short keeps them)
    assert "medians: baseline" in result.output and "medians: quality" in result.output
    figures = json.loads(out.read_text())
    assert tuple(figures) == GPU_KEYS + gpu_memory.MEMORY_KEYS
    assert (figures["gpu_name"], figures["compile"]) == ("cpu", "aot_eager/blocks")
    # every model of the memory figures built and ran (on a CPU there is no figure to take)
    assert all(f"memory: {name}" in result.output for name in gpu_memory.MODELS)
    assert "not measured" not in result.output
    assert all(figures[k] is None for k in figures if "mem_mb" in k or k == "cuda_context_mb")
    assert figures["gpu_processes"] == 4  # tritonserver + the t4 stubs of segmentation, room classification, engine
    assert all(figures[k] > 0 for k in GPU_KEYS if k.endswith(("_ms", "_ratio", "_speedup")))

    result = runner.invoke(bench_app, ["gpu", "--device", "tpu"])
    assert result.exit_code == 2
    assert "--device 'tpu': choose cuda or cpu" in result.output


def test_served_total_counts_a_context_per_process_and_nothing_unmeasured():
    models = {"detection": 300.0, "depth": 1500.0, "segmentation": 400.0, "room_classification": 350.0}
    assert gpu_memory.served_total(6000.0, models, 500.0, 4) == 6000 + 2550 + 2000
    assert gpu_memory.served_total(6000.0, {**models, "segmentation": None}, 500.0, 4) is None
    assert gpu_memory.served_total(None, models, 500.0, 4) is None


def test_a_model_that_cannot_be_built_loses_only_its_own_memory_figure(monkeypatch):
    from restyle.profiles import get_profile

    def missing(*args):
        raise ImportError("No module named 'sam2'")

    ran = []
    fine = lambda *args: lambda: ran.append(1)  # noqa: E731
    monkeypatch.setattr(gpu_memory, "LOADERS", {**{name: fine for name in gpu_memory.MODELS}, "segmentation": missing})
    said = []
    peaks = gpu_memory.measure(get_profile("tiny"), "cpu", said.append)
    assert set(peaks) == set(gpu_memory.MODELS) and len(ran) == 3
    assert "memory: segmentation not measured (ImportError: No module named 'sam2')" in " ".join(said)


def test_bench_gpu_refuses_an_unknown_compile_scope(runner):
    result = runner.invoke(bench_app, ["gpu", "--compile-scope", "layers"])
    assert result.exit_code == 2
    assert "--compile-scope 'layers': choose one of t4, model, blocks" in result.output


def test_gpu_bench_imports_no_serving_stack():
    """The GPU hosts have no tritonserver, ultralytics or sam2, nor the job API's stack: the command
    must not import them (what they lack beyond that travels as wheels: scripts/gpu_wheels.sh)."""
    code = ("import sys; from restyle_cli.main import app; import restyle.bench_diffusion, restyle.diffusion, "
            "export.diffusion; heavy = {'tritonclient', 'ultralytics', 'sam2', 'pytriton', 'onnxruntime', "
            "'fastapi', 'redis', 'boto3', 'uvicorn', 'prometheus_client'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
