"""Commands of the job service, registered into the root `restyle` CLI.

    restyle api | worker | submit | serve | storage-lifecycle | soak
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import typer

app = typer.Typer(help="Room restyle job service", no_args_is_help=True)
# Triton keeps its own 8000/8001/8002; the job API gets a port of its own.
DEFAULT_API_PORT = 8080


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str) -> None:
    from restyle.cli import fail

    fail(message)


def _check_port(host: str, port: int) -> None:
    from restyle.server_ports import port_in_use

    if port_in_use(port, host):
        _fail(f"port {port} is already in use: pass --port with a free one, or stop what listens there")


@app.command("api")
def api(host: str = typer.Option("0.0.0.0", help="address to listen on"),
        port: int = typer.Option(DEFAULT_API_PORT, help="HTTP port"),
        workers: int = typer.Option(1, help="uvicorn worker processes")) -> None:
    """Run the HTTP API (settings from RESTYLE_* env vars)."""
    import uvicorn

    from .local_stack import api_state

    _check_port(host, port)
    _logging()
    with api_state(host, port):
        # access_log off: our middleware logs without query strings, which may carry api_key=...
        uvicorn.run("client_api.main:create_app", factory=True, host=host, port=port, workers=workers,
                    access_log=False, proxy_headers=True)


async def _run_worker(stop: asyncio.Event, settings=None) -> None:
    from redis.exceptions import RedisError

    from .config import Settings
    from .services import Services
    from .worker import Worker

    services = Services.create(settings or Settings())
    try:
        await services.redis.ping()
    except RedisError as exc:
        await services.close()
        _fail(f"cannot reach Redis at {services.settings.redis_url} ({exc}); start redis-server, or point "
              "RESTYLE_REDIS_URL at yours")
    try:
        await Worker(services).run(stop)
    finally:
        await services.close()


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def handler():
        if stop.is_set():  # second signal: leave now; our pending entry is reclaimed elsewhere
            os._exit(1)
        logging.getLogger("restyle.worker").info("stopping after the current job (signal again to quit)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler)


@app.command("worker")
def worker() -> None:
    """Run a worker: takes jobs from Redis and drives Triton. Run as many as you like."""
    _logging()

    async def main():
        stop = asyncio.Event()
        _stop_on_signals(asyncio.get_running_loop(), stop)
        await _run_worker(stop)

    asyncio.run(main())


@app.command("submit")
def submit(photo: Path = typer.Argument(..., exists=True, dir_okay=False),
           style: str = typer.Option(..., "--style", "-s"),
           prompt: str = typer.Option(None), room_type: str = typer.Option(None), seed: int = typer.Option(None),
           steps: int = typer.Option(None), mode: str = typer.Option(None),
           speed: str = typer.Option(None, help="quality (default) | balanced | fast"),
           wait: bool = typer.Option(False, "--wait", help="follow progress and download the result; Ctrl-C cancels"),
           api_url: str = typer.Option(None, "--api", envvar="RESTYLE_API_URL",
                                       help=f"default: the API `restyle serve`/`restyle api` started here, "
                                            f"else http://127.0.0.1:{DEFAULT_API_PORT}"),
           api_key: str = typer.Option(None, "--api-key", envvar="RESTYLE_API_KEY"),
           out: Path = typer.Option(None, "--out", "-o", help="where to save the result (implies --wait)")) -> None:
    """Submit a photo; with --wait show a progress bar and download the result."""
    from .local_stack import running_api_url
    from .submit_client import submit_and_follow

    api_url = api_url or running_api_url() or f"http://127.0.0.1:{DEFAULT_API_PORT}"
    code = submit_and_follow(api_url, api_key, photo, style=style, prompt=prompt, room_type=room_type, seed=seed,
                             steps=steps, mode=mode, speed=speed, wait=wait or out is not None, out=out)
    raise typer.Exit(code)


@app.command("storage-lifecycle")
def storage_lifecycle() -> None:
    """Apply retention: S3/R2 bucket lifecycle rules, or sweep the local folder."""
    from .config import Settings
    from .storage import make_storage

    s = Settings()
    result = make_storage(s).apply_lifecycle(s.upload_retention_days, s.result_retention_days)
    if "rules" in result:
        for rule in result["rules"]:
            typer.echo(f"bucket {s.s3_bucket}: {rule['Filter']['Prefix']} expires after {rule['Expiration']['Days']} days")
    else:
        typer.echo(f"{s.local_storage_dir}: removed {result['uploads']} uploads older than {s.upload_retention_days} "
                   f"days and {result['results']} results older than {s.result_retention_days} days")


@app.command("soak")
def soak(jobs: int = typer.Option(60, help="jobs submitted, evenly over the run"),
         minutes: float = typer.Option(3.0, help="how long jobs are submitted and processes killed"),
         workers: int = typer.Option(4, help="`restyle worker` processes"),
         kill_every: float = typer.Option(30.0, help="mean seconds between two kills (random, exponential)"),
         steps: int = typer.Option(2, help="diffusion steps per job"),
         drain_minutes: float = typer.Option(10.0, help="after the run, how long to wait for the last jobs"),
         seed: int = typer.Option(0, help="seed of the chaos (which process, when)")) -> None:
    """Chaos run on this machine (tiny profile): workers, tritonserver and redis-server killed at random
    while jobs flow; prints accepted, completed, failed by reason, doubled, lost and the longest wait."""
    import json

    from .soak import run_soak

    _logging("WARNING")
    figures = run_soak(jobs, minutes, workers, kill_every, steps, drain_minutes, seed, log=typer.echo)
    typer.echo(json.dumps(figures, indent=2))
    raise typer.Exit(0 if figures["lost"] == figures["doubled"] == 0 and not figures["failed"] else 1)


@app.command("serve")
def serve(profile: str = typer.Option(None, help="tiny | t4 | cpu (default RESTYLE_PROFILE, tiny)"),
          port: int = typer.Option(DEFAULT_API_PORT, help="the API's HTTP port"),
          host: str = typer.Option("127.0.0.1", help="the API's address")) -> None:
    """Everything on one machine: redis-server, tritonserver, the API and a worker."""
    from restyle.profiles import get_profile
    from restyle.settings import get_settings

    from .local_stack import StackError, run_stack

    try:
        prof = get_profile(profile or get_settings().profile)
    except ValueError as exc:
        _fail(str(exc))
    _check_port(host, port)
    _logging()
    try:
        run_stack(profile=prof.name, host=host, port=port)
    except StackError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    app()
