"""The `restyle` command line: build models, run Triton, call the pipeline (and the job service)."""
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn
from rich.table import Table

from client_api.cli import app as service_app
from restyle.profiles import PROFILES, get_profile
from restyle.settings import get_settings

app = typer.Typer(help="Room restyle: photo of a room + a style -> the same room, redesigned.", no_args_is_help=True)
models_app = typer.Typer(help="Build and render the model repository.", no_args_is_help=True)
triton_app = typer.Typer(help="Run a local tritonserver on the model repository.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(triton_app, name="triton")
# The job service's commands (api, worker, submit, serve, storage-lifecycle) sit at the top level.
app.registered_commands += service_app.registered_commands
console = Console()

ProfileOpt = typer.Option(None, "--profile", "-p", help=f"one of: {', '.join(PROFILES)} (default RESTYLE_PROFILE)")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@models_app.command("build")
def models_build(profile: str = ProfileOpt,
                 weights: Path = typer.Option(None, help="folder of local checkpoints (README: weights layout)"),
                 random_weights: bool = typer.Option(False, help="full-size architectures, random weights: speed runs only"),
                 seed: int = typer.Option(None, help="seed for random weights (default RESTYLE_SEED)")):
    """Export every model of a profile into artifacts/<profile>/ and render its configs."""
    from export.build import build

    settings = get_settings()
    try:
        prof = get_profile(profile or settings.profile)
        manifest = build(prof, settings.artifacts_dir, settings.model_repository, weights=weights,
                         random_weights=random_weights, seed=settings.seed if seed is None else seed)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(f"built profile [bold]{prof.name}[/bold] ({manifest['weights']}) into "
                  f"{settings.artifacts_dir / prof.name}; configs rendered in {settings.model_repository}")


@models_app.command("render")
def models_render(profile: str = ProfileOpt):
    """Render every config.pbtxt for a profile whose artifacts are already built."""
    from restyle.repository import render_repository

    settings = get_settings()
    prof = get_profile(profile or settings.profile)
    try:
        written = render_repository(prof, settings.artifacts_dir / prof.name, settings.model_repository)
    except FileNotFoundError as exc:
        _fail(str(exc))
    console.print(f"rendered {len(written)} configs for profile {prof.name}")


@triton_app.command("start")
def triton_start(profile: str = ProfileOpt, http_port: int = typer.Option(None), grpc_port: int = typer.Option(None),
                 metrics_port: int = typer.Option(None)):
    """Start tritonserver in the background; returns once every model is ready."""
    from restyle import server
    from restyle.repository import render_repository

    settings = get_settings()
    prof = get_profile(profile or settings.profile)
    if (running := server.current()) is not None:
        _fail(f"tritonserver already runs (pid {running.pid}, profile {running.profile}); `restyle triton stop` first")
    try:
        render_repository(prof, settings.artifacts_dir / prof.name, settings.model_repository)
        with console.status(f"starting tritonserver ({prof.name}); loading models...") as status:
            def on_wait(srv):
                status.update(f"starting tritonserver ({prof.name}): {_ready_count(srv)} models ready")
            srv = server.start(prof.name, http_port or settings.triton_http_port, grpc_port or settings.triton_grpc_port,
                               metrics_port or settings.triton_metrics_port, on_wait=on_wait)
    except (FileNotFoundError, server.TritonStartError) as exc:
        _fail(str(exc))
    console.print(f"tritonserver ready (pid {srv.pid}): HTTP {srv.http_url}, gRPC {srv.grpc_url}, "
                  f"metrics {srv.metrics_url}; log {srv.log}")


def _ready_count(srv) -> str:
    from restyle import server

    try:
        states = server.model_states(srv)
    except OSError:
        return "0"
    return f"{sum(s == 'READY' for s in states.values())}/{len(states)}"


@triton_app.command("stop")
def triton_stop():
    """Stop the tritonserver that `restyle triton start` left running."""
    from restyle import server

    stopped = server.stop_current()
    console.print(f"stopped tritonserver (pid {stopped.pid})" if stopped else "no tritonserver running")


@triton_app.command("status")
def triton_status():
    """Show whether tritonserver runs and each model's state."""
    from restyle import server

    srv = server.current()
    if srv is None:
        console.print("no tritonserver running")
        raise typer.Exit(1)
    table = Table(title=f"tritonserver pid {srv.pid}, profile {srv.profile}, HTTP {srv.http_url}, gRPC {srv.grpc_url}")
    table.add_column("model")
    table.add_column("state")
    for name, state in sorted(server.model_states(srv).items()):
        table.add_row(name, state)
    console.print(table)


@app.command()
def infer(photo: Path = typer.Argument(..., exists=True, dir_okay=False, help="room photo (JPEG, PNG, WebP)"),
          style: str = typer.Option(..., "--style", "-s"), prompt: str = typer.Option(None),
          room_type: str = typer.Option(None, help="skip classification and use this room type"),
          seed: int = typer.Option(None), steps: int = typer.Option(None), mode: str = typer.Option(None),
          protocol: str = typer.Option("http", help="http | grpc"),
          url: str = typer.Option(None, help="HOST:PORT (default the local server's port for the protocol)"),
          progress: bool = typer.Option(False, "--progress", help="stream progress over gRPC"),
          out: Path = typer.Option(Path("out/restyled.jpg"), "--out", "-o")):
    """Call room_restyle directly with tritonclient and save the restyled photo."""
    from restyle.client import Cancelled, RestyleRequest, TritonRequestError, TritonRestyleClient, TritonUnavailable

    settings = get_settings()
    if progress:
        protocol = "grpc"
    if protocol not in ("http", "grpc"):
        _fail("--protocol must be http or grpc")
    port = settings.triton_http_port if protocol == "http" else settings.triton_grpc_port
    client = TritonRestyleClient(url or f"{settings.triton_host}:{port}", protocol=protocol)
    req = RestyleRequest(photo.read_bytes(), style, prompt=prompt, room_type=room_type, seed=seed, steps=steps, mode=mode)
    started = time.perf_counter()
    try:
        if progress:
            columns = (TextColumn("{task.description:<40}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       TimeElapsedColumn())
            with Bar(*columns, console=console) as bar:
                task = bar.add_task("queued", total=1.0)

                def on_progress(p):
                    detail = f" step {p.step}/{p.total_steps}" if p.step else ""
                    bar.update(task, completed=p.progress, description=f"{p.stage}{detail}")
                result = client.restyle(req, on_progress)
                bar.update(task, completed=1.0, description="done")
        else:
            result = client.infer(req)
    except (TritonRequestError, TritonUnavailable, Cancelled) as exc:
        _fail(str(exc))
    elapsed = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(result.image_jpeg)
    console.print(f"room type: [bold]{result.room_type}[/bold] ({result.room_confidence:.2f})"
                  + ("" if result.is_room else " — this photo does not look like a room"))
    console.print(f"quality score: {result.quality_score:.3f}" + (f" flags: {', '.join(result.quality_flags)}"
                                                                 if result.quality_flags else ""))
    console.print(f"seed: {result.seed}; detections: {len(result.detections)}")
    for det in result.detections[:10]:
        console.print(f"  {det['class_name']:<16} {det['score']:.2f} {det['box']}" + (" furniture" if det["furniture"] else ""))
    if result.timings:
        console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    console.print(f"total {elapsed:.2f}s over {protocol}; saved {out}")
