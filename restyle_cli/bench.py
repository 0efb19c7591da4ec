"""`restyle bench ...`: one benchmark command per layer. Each prints its figures and ratios,
measured side by side in one run, and with --json writes them as one flat JSON object."""
import json
import tempfile
from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks, one per layer (commands, not tests): figures and ratios from one run.",
                        no_args_is_help=True)


@bench_app.command("api")
def api(quick: bool = typer.Option(False, "--quick", help="fewer requests (under a minute here)"),
        json_path: Path = typer.Option(None, "--json", help="write the figures here as one flat JSON object"),
        api_workers: int = typer.Option(1, help="`restyle api --workers`: API processes (its default: 1)"),
        requests: int = typer.Option(None, help="submits per concurrency level (default 300 quick, 1500)"),
        plot: Path = typer.Option(None, help="write a PNG of submit latency and throughput against concurrency"),
        compare: Path = typer.Option(None, help="a JSON of an earlier run, drawn beside this one in --plot")) -> None:
    """The job API on a real redis-server and local storage: submits at concurrency 1/8/32/64,
    status GETs, and 500 SSE subscribers of one job (lag from publish to receipt)."""
    from client_api import bench_api

    out = bench_api.run(quick=quick, api_workers=api_workers, requests=requests)
    bench_api.report(out)
    if json_path:
        json_path.write_text(json.dumps(out, indent=2) + "\n")
    if plot:
        runs = {"earlier": json.loads(compare.read_text())} if compare else {}
        bench_api.plot({**runs, "this run": out}, plot, f"restyle bench api, {out['api_workers']} API process(es), "
                       f"{out['cpus']} shared CPUs, load {out['load_avg_1m']}")


@bench_app.command("triton")
def triton(
    profile: str = typer.Option("tiny", help="the served profile; its artefacts feed the in-process side"),
    quick: bool = typer.Option(False, help="2 steps, concurrency 1 and 4, stages preprocess, detection, edges; "
                                           "under 3 minutes on 2 CPUs"),
    url: str = typer.Option(None, help="gRPC HOST:PORT of a running server (default: start one on free ports)"),
    photo: Path = typer.Option(None, exists=True, dir_okay=False, help="room photo (default: a synthetic room)"),
    steps: int = typer.Option(None, help="denoising steps (default 20, --quick 2)"),
    stages: str = typer.Option(None, help="comma-separated stage models to measure alone (default all)"),
    json_path: Path = typer.Option(None, "--json", help="write the figures as one flat JSON object"),
    plot: Path = typer.Option(None, help="write a PNG of latency and throughput against concurrency"),
) -> None:
    """perf_analyzer on the room_restyle ensemble and each stage vs the same stage code in one process."""
    from restyle import bench_triton

    bench_triton.run(profile, quick=quick, url=url, photo=photo.read_bytes() if photo else None, steps=steps,
                     stages=stages.split(",") if stages else None, json_path=json_path, plot_path=plot)


def _show(title: str, out: dict, json_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in out.items():
        table.add_row(key, str(value))
    Console().print(table)
    if json_path:
        json_path.write_text(json.dumps(out, indent=2) + "\n")


@bench_app.command("diffusion")
def diffusion(
    profile: str = typer.Option("tiny", help="whose built artefacts (artifacts/PROFILE/diffusion) to load, on CPU"),
    quick: bool = typer.Option(False, "--quick", help="128x128, 3 repeats (under 3 minutes here)"),
    repeats: int = typer.Option(None, help="timed runs per contender (default 5, --quick 3)"),
    size: int = typer.Option(None, help="image side in pixels (default the profile's working size, --quick 128)"),
    threads: int = typer.Option(1, help="torch CPU threads; 1 keeps medians steady on a shared machine"),
    json_path: Path = typer.Option(None, "--json", help="write the figures as one flat JSON object"),
    plot: Path = typer.Option(None, help="write a PNG of the median time per speed mode"),
    levers: Path = typer.Option(None, help="instead: CPU time, evals and structure score of each balanced "
                                           "lever alone, written here as JSON"),
    model_dir: Path = typer.Option(None, help="a built diffusion folder instead of the profile's, e.g. a "
                                              "full-size random build (`restyle bench gpu` makes one)"),
) -> None:
    """The engine in each speed mode vs bare diffusers (StableDiffusionControlNetPipeline, both
    ControlNets, 20 steps, its defaults), same weights and size, one run; medians."""
    import torch

    from restyle import bench_diffusion
    from restyle.cli import fail
    from restyle.profiles import get_profile
    from restyle.settings import get_settings

    try:
        prof = get_profile(profile)
    except ValueError as exc:
        fail(str(exc))
    given = model_dir is not None
    model_dir = model_dir or get_settings().artifacts_dir / prof.name / "diffusion"
    if not (model_dir / "lcm_lora").is_dir():
        fail(f"{model_dir} is missing or predates the speed modes: " + (
            "give a folder export.diffusion.build_diffusion wrote (its diffusion/ subfolder)" if given
            else f"run `restyle models build --profile {prof.name}`"))
    torch.set_num_threads(threads)
    size = size or (128 if quick else prof.working_long_side)
    repeats = repeats or (3 if quick else 5)
    progress = lambda text: typer.echo(f"  {text}", err=True)  # noqa: E731
    if levers:
        rows = bench_diffusion.run_levers(model_dir, size=size, repeats=repeats, progress=progress)
        for row in rows:
            typer.echo(f"{row['lever']:>18}  {row['cpu_ms']:9.1f} CPU ms  {row['evals']:4d} evals  "
                       f"structure {row['structure']}")
        levers.write_text(json.dumps(rows, indent=2) + "\n")
        return
    out = bench_diffusion.run_diffusion(model_dir, size=size, repeats=repeats, progress=progress)
    _show(f"diffusion engine vs bare diffusers ({prof.name}, {size}x{size}, CPU, {threads} thread(s), "
          f"median of {repeats})", out, json_path)
    if plot:
        bench_diffusion.plot(out, plot, f"{prof.name} random weights, {size}x{size}, CPU, median of {repeats}")


def _compile_scope(given: str, option: str) -> str:
    """A compile scope option: 't4' for the t4 profile's; an unknown one ends the command (exit 2)."""
    from restyle.diffusion import COMPILE_SCOPES
    from restyle.profiles import get_profile

    scope = get_profile("t4").compile_scope if given == "t4" else given
    if scope not in COMPILE_SCOPES:
        typer.echo(f"error: {option} '{scope}': choose one of t4, {', '.join(COMPILE_SCOPES)}", err=True)
        raise typer.Exit(2)
    return scope


@bench_app.command("compile")
def compile_(
    profile: str = typer.Option("tiny", help="whose built artefacts (artifacts/PROFILE/diffusion) to load, on CPU"),
    model_dir: Path = typer.Option(None, help="a built diffusion folder instead of the profile's"),
    scope: str = typer.Option("t4", help="'model', 'blocks', or 't4' for the t4 profile's"),
    backend: str = typer.Option("inductor", help="torch.compile backend ('aot_eager': tracing only, fast)"),
    long_side: int = typer.Option(128, help="warm-up at its 3:4 and 4:3 sizes; probes at 2:1, 1:2 and square"),
    threads: int = typer.Option(1, help="torch CPU threads"),
    json_path: Path = typer.Option(None, "--json", help="write the figures as one flat JSON object"),
) -> None:
    """What the compiled engine's start costs (warm-up seconds, graphs) and whether it then serves
    like eager (graphs compiled after the warm-up, functions dynamo gave up on, max pixel difference,
    evaluations), on CPU. Inductor takes minutes here ('model' scope ~8 at the default size)."""
    import torch

    from restyle import bench_diffusion
    from restyle.cli import fail
    from restyle.profiles import get_profile
    from restyle.settings import get_settings

    try:
        prof = get_profile(profile)
    except ValueError as exc:
        fail(str(exc))
    scope = _compile_scope(scope, "--scope")
    model_dir = model_dir or get_settings().artifacts_dir / prof.name / "diffusion"
    if not (model_dir / "lcm_lora").is_dir():
        fail(f"{model_dir} is missing: run `restyle models build --profile {prof.name}`")
    torch.set_num_threads(threads)
    progress = lambda text: typer.echo(f"  {text}", err=True)  # noqa: E731
    out = bench_diffusion.run_compile(model_dir, scope=scope, backend=backend, long_side=long_side,
                                      progress=progress)
    _show(f"compiled engine: {backend}/{scope}, warm-up at long side {long_side}, CPU", out, json_path)


@bench_app.command("gpu")
def gpu(
    model_dir: Path = typer.Option(None, help="a built diffusion folder (default: random full-size "
                                              "weights built into a temporary folder)"),
    quick: bool = typer.Option(False, "--quick", help="3 repeats instead of 10"),
    repeats: int = typer.Option(None, help="timed runs per contender"),
    size: int = typer.Option(None, help="image side in pixels (default 512; 128 with --device cpu)"),
    device: str = typer.Option("cuda", help="'cpu' rehearses the same run on tiny random weights "
                               "(fp16 and channels_last as on a GPU, no memory figure): a check of a host's "
                               "install and of the GPU's code path, never a figure"),
    compile_backend: str = typer.Option("t4", "--compile", help="torch.compile backend for the engine, "
                                        "'t4' for the t4 profile's, 'none' for eager"),
    compile_scope: str = typer.Option("t4", "--compile-scope", help="what it compiles: 'model' (each "
                                      "denoiser's forward), 'blocks' (the repeated blocks), 't4' for the t4 profile's"),
    json_path: Path = typer.Option(None, "--json", help="write the figures as one flat JSON object"),
) -> None:
    """On a CUDA GPU: t4 architectures, random fp16 weights, 20 steps: bare diffusers eager vs
    the engine in each speed mode, and the engine's peak GPU memory."""
    from restyle import bench_diffusion
    from restyle.profiles import get_profile

    backend = {"t4": get_profile("t4").compile_backend, "none": None}.get(compile_backend, compile_backend)
    scope = _compile_scope(compile_scope, "--compile-scope")
    if device not in ("cuda", "cpu"):
        typer.echo(f"error: --device {device!r}: choose cuda or cpu", err=True)
        raise typer.Exit(2)
    cuda = device == "cuda"
    size = size or (512 if cuda else 128)
    progress = lambda text: typer.echo(f"  {text}", err=True)  # noqa: E731
    try:
        if cuda:
            bench_diffusion.check_gpu()  # before minutes of building weights
        with tempfile.TemporaryDirectory(prefix="restyle-gpu-bench-") as tmp:
            if model_dir is None:
                from export.diffusion import build_diffusion

                progress("building random " + ("full-size weights (t4 architectures)" if cuda else "tiny weights"))
                build_diffusion(Path(tmp), weights=None, size="full" if cuda else "tiny", seed=0)
                model_dir = Path(tmp) / "diffusion"
            out = bench_diffusion.run_gpu(model_dir, size=size, repeats=repeats or (3 if quick else 10),
                                          compile_backend=backend, compile_scope=scope, device=device,
                                          progress=progress)
        # after the engine is gone, so each model has the GPU to itself
        from export import gpu_memory

        out.update(gpu_memory.figures(out["peak_mem_mb"], device, progress))
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    what = "GPU" if cuda else "CPU rehearsal, tiny weights, not a figure"
    _show(f"{what}: engine vs bare diffusers ({size}x{size}, fp16, 20 steps)", out, json_path)
