"""`restyle`: every command, from the three packages that own them."""
import os

import typer

from client_api.cli import app as service_app
from export.cli import models_app
from restyle.cli import infer, triton_app
from restyle_cli.bench import bench_app

app = typer.Typer(help="Room restyle: photo of a room + a style -> the same room, redesigned.", no_args_is_help=True)


@app.callback()
def root(debug: bool = typer.Option(False, "--debug", help="show tracebacks, also for expected failures "
                                                            "(or set RESTYLE_DEBUG=1)")) -> None:
    from restyle.settings import get_settings

    if debug:
        os.environ["RESTYLE_DEBUG"] = "1"
        get_settings.cache_clear()


app.add_typer(models_app, name="models")
app.add_typer(triton_app, name="triton")
app.add_typer(bench_app, name="bench")
app.command()(infer)
# The job service's commands (api, worker, submit, serve, storage-lifecycle) sit at the top level.
app.registered_commands += service_app.registered_commands


@app.command("perf-analyzer", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def perf_analyzer(ctx: typer.Context) -> None:
    """perf_analyzer (the tritonclient 2.51 wheel's) with its libraries found; every argument is
    its own, e.g. `restyle perf-analyzer -m room_restyle -u HOST:8001 -i grpc --input-data in.json`."""
    from restyle import perf

    try:
        perf.exec_(ctx.args)
    except perf.PerfAnalyzerMissing as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


# Top-level modules of the `models` extra: the base install (the job service's image) lacks them on purpose.
MODEL_STACK = {"torch", "torchvision", "diffusers", "transformers", "ultralytics", "sam2", "onnx", "onnxruntime",
               "onnxslim", "pytriton", "jinja2", "huggingface_hub", "accelerate", "peft", "safetensors", "tqdm"}


def main() -> None:
    """The `restyle` console script: the app, with one line instead of a traceback when a model command
    runs in the service-only install."""
    try:
        app()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in MODEL_STACK or os.environ.get("RESTYLE_DEBUG"):
            raise
        typer.echo(f"this command needs the model stack ({exc.name} is missing; this install is the job service "
                   "only): pip install 'room-restyle[models]'", err=True)
        raise SystemExit(2) from None
