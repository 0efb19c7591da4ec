"""`restyle bench ...`: one benchmark command per layer. Each prints its figures and ratios,
measured side by side in one run, and with --json writes them as one flat JSON object."""
import json
from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks, one per layer (commands, not tests): figures and ratios from one run.",
                        no_args_is_help=True)


@bench_app.command("api")
def api(quick: bool = typer.Option(False, "--quick", help="fewer requests (under a minute here)"),
        json_path: Path = typer.Option(None, "--json", help="write the figures here as one flat JSON object"),
        api_workers: int = typer.Option(2, help="`restyle api --workers`: API processes"),
        requests: int = typer.Option(None, help="submits per concurrency level (default 300 quick, 1500)")) -> None:
    """The job API on a real redis-server and local storage: submits at concurrency 1/8/32/64,
    status GETs, and 500 SSE subscribers of one job (lag from publish to receipt)."""
    from client_api import bench_api

    out = bench_api.run(quick=quick, api_workers=api_workers, requests=requests)
    bench_api.report(out)
    if json_path:
        json_path.write_text(json.dumps(out, indent=2) + "\n")


@bench_app.command("triton")
def triton(
    profile: str = typer.Option("tiny", help="the served profile; its artefacts feed the in-process side"),
    quick: bool = typer.Option(False, help="4 steps, concurrency 1 and 4, stages preprocess, detection, "
                                           "segmentation, diffusion; under 3 minutes on 2 CPUs"),
    url: str = typer.Option(None, help="gRPC HOST:PORT of a running server (default: start one on free ports)"),
    photo: Path = typer.Option(None, exists=True, dir_okay=False, help="room photo (default: a synthetic room)"),
    steps: int = typer.Option(None, help="denoising steps (default 20, --quick 4)"),
    stages: str = typer.Option(None, help="comma-separated stage models to measure alone (default all)"),
    json_path: Path = typer.Option(None, "--json", help="write the figures as one flat JSON object"),
    plot: Path = typer.Option(None, help="write a PNG of latency and throughput against concurrency"),
) -> None:
    """perf_analyzer on the room_restyle ensemble and each stage vs the same stage code in one process."""
    from restyle import bench_triton

    bench_triton.run(profile, quick=quick, url=url, photo=photo.read_bytes() if photo else None, steps=steps,
                     stages=stages.split(",") if stages else None, json_path=json_path, plot_path=plot)
