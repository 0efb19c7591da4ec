"""Commands of the model side: run a local tritonserver and call the pipeline directly.

The root `restyle` command (restyle_cli) puts these beside export's and the job service's.
"""
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table

from restyle.profiles import PROFILES, get_profile
from restyle.settings import get_settings

triton_app = typer.Typer(help="Run a local tritonserver on the model repository.", no_args_is_help=True)
console = Console()

ProfileOpt = typer.Option(None, "--profile", "-p", help=f"one of: {', '.join(PROFILES)} (default RESTYLE_PROFILE)")


def fail(message: str) -> None:
    """End an expected failure with one clear message and exit 2; with --debug (RESTYLE_DEBUG=1)
    the exception being handled is raised instead, traceback and all."""
    if get_settings().debug and sys.exc_info()[1] is not None:
        raise
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@triton_app.command("start")
def triton_start(profile: str = ProfileOpt,
                 http_port: int = typer.Option(None, help="default RESTYLE_TRITON_HTTP_PORT (8000)"),
                 grpc_port: int = typer.Option(None, help="default RESTYLE_TRITON_GRPC_PORT (8001)"),
                 metrics_port: int = typer.Option(None, help="default RESTYLE_TRITON_METRICS_PORT (8002)")):
    """Start tritonserver in the background; returns once every model is ready."""
    from restyle import server
    from restyle.repository import render_repository

    settings = get_settings()
    try:
        prof = get_profile(profile or settings.profile)
        if (running := server.current()) is not None:
            raise server.TritonStartError(f"tritonserver already runs (pid {running.pid}, profile {running.profile}, "
                                          f"HTTP {running.http_url}); `restyle triton stop` first")
        for line in server.cleanup_leftovers(settings.model_repository):
            console.print(line)
        render_repository(prof, settings.artifacts_dir / prof.name, settings.model_repository)
        with console.status(f"starting tritonserver ({prof.name}); loading models...") as status:
            srv = server.start(prof.name, http_port or settings.triton_http_port, grpc_port or settings.triton_grpc_port,
                               metrics_port or settings.triton_metrics_port,
                               on_wait=_loading(status, f"starting tritonserver ({prof.name})"))
    except (ValueError, FileNotFoundError, server.TritonStartError) as exc:
        fail(str(exc))
    console.print(f"tritonserver ready (pid {srv.pid}): HTTP {srv.http_url}, gRPC {srv.grpc_url}, "
                  f"metrics {srv.metrics_url}; log {srv.log}")


def _loading(status, what: str):
    """Model loading progress on the status line in a terminal, a line every 10 s otherwise
    (`make demo` and CI logs have no terminal)."""
    from restyle import server

    terminal = console.is_terminal
    return server.loading_reporter(lambda text: (status.update if terminal else console.print)(f"{what}: {text}"),
                                   every_s=0 if terminal else 10)


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


def infer(photo: Path = typer.Argument(..., exists=True, dir_okay=False, help="room photo (JPEG, PNG, WebP)"),
          style: str = typer.Option(..., "--style", "-s", help="a style name (see README or GET /v1/styles)"),
          prompt: str = typer.Option(None, help="free text added to the style prompt"),
          room_type: str = typer.Option(None, help="skip classification and use this room type"),
          seed: int = typer.Option(None), steps: int = typer.Option(None), mode: str = typer.Option(None),
          speed: str = typer.Option(None, help="quality (default) | balanced | fast"),
          protocol: str = typer.Option(None, help="http | grpc (default http; grpc with --progress)"),
          url: str = typer.Option(None, help="HOST:PORT; default the server `restyle triton start` started, "
                                             "else RESTYLE_TRITON_HOST and the protocol's port setting"),
          progress: bool = typer.Option(False, "--progress", help="stream progress (gRPC); Ctrl-C cancels on the server"),
          out: Path = typer.Option(Path("out/restyled.jpg"), "--out", "-o")):
    """Call room_restyle directly with tritonclient and save the restyled photo."""
    from restyle import server
    from restyle.client import Cancelled, RestyleRequest, TritonRequestError, TritonRestyleClient, TritonUnavailable
    from restyle.contract import InvalidRequest, parse_request

    settings = get_settings()
    if progress and protocol == "http":
        fail("--progress streams over gRPC, which HTTP cannot carry: drop --protocol http")
    protocol = protocol or ("grpc" if progress else "http")
    if protocol not in ("http", "grpc"):
        fail("--protocol must be http or grpc")
    try:  # refuse a bad option here rather than after the upload
        parse_request(style=style, prompt=prompt, room_type=room_type, seed=seed, steps=steps, mode=mode, speed=speed)
    except InvalidRequest as exc:
        fail(str(exc))
    if url is None:
        running = server.current()
        port = settings.triton_http_port if protocol == "http" else settings.triton_grpc_port
        url = (running.http_url if protocol == "http" else running.grpc_url) if running else f"{settings.triton_host}:{port}"
    client = TritonRestyleClient(url, protocol=protocol)
    req = RestyleRequest(photo.read_bytes(), style, prompt=prompt, room_type=room_type, seed=seed, steps=steps, mode=mode,
                         speed=speed)
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
    except TritonUnavailable as exc:
        hint = " (is that its gRPC port? tritonserver's default is 8001)" if protocol == "grpc" else ""
        fail(f"cannot reach tritonserver at {url} over {protocol}{hint}: {_first_line(exc)}\n"
             "start one with `restyle triton start`, or pass --url HOST:PORT")
    except (TritonRequestError, Cancelled) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("cancelled" + (" (the server stopped the request)" if progress else ""))
        raise typer.Exit(130) from None
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


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
