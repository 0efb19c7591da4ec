"""Commands of the job service, registered into the root `restyle` CLI.

    restyle api | worker | submit | serve | storage-lifecycle
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import typer

app = typer.Typer(help="Room restyle job service", no_args_is_help=True)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("api")
def api(host: str = "0.0.0.0", port: int = 8000, workers: int = 1) -> None:
    """Run the HTTP API (settings from RESTYLE_* env vars)."""
    import uvicorn

    _logging()
    # access_log off: our middleware logs without query strings, which may carry api_key=...
    uvicorn.run("client_api.main:create_app", factory=True, host=host, port=port, workers=workers,
                access_log=False, proxy_headers=True)


async def _run_worker(stop: asyncio.Event, settings=None) -> None:
    from .config import Settings
    from .services import Services
    from .worker import Worker

    services = Services.create(settings or Settings())
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
           wait: bool = typer.Option(False, "--wait", help="follow progress and download the result"),
           api_url: str = typer.Option("http://localhost:8000", "--api", envvar="RESTYLE_API_URL"),
           api_key: str = typer.Option(None, "--api-key", envvar="RESTYLE_API_KEY"),
           out: Path = typer.Option(None, "--out", "-o", help="where to save the result (implies --wait)")) -> None:
    """Submit a photo; with --wait show a progress bar and download the result."""
    from .submit_client import submit_and_follow

    code = submit_and_follow(api_url, api_key, photo, style=style, prompt=prompt, room_type=room_type, seed=seed,
                             steps=steps, mode=mode, wait=wait or out is not None, out=out)
    raise typer.Exit(code)


@app.command("storage-lifecycle")
def storage_lifecycle() -> None:
    """Apply retention: S3/R2 bucket lifecycle rules, or sweep the local folder."""
    from .config import Settings
    from .storage import make_storage

    s = Settings()
    result = make_storage(s).apply_lifecycle(s.upload_retention_days, s.result_retention_days)
    typer.echo(result)


@app.command("serve")
def serve(profile: str = typer.Option("tiny"), port: int = typer.Option(8000),
          host: str = typer.Option("127.0.0.1")) -> None:
    """Everything on one machine: redis-server, tritonserver, the API and a worker."""
    from .local_stack import run_stack

    _logging()
    run_stack(profile=profile, host=host, port=port)


if __name__ == "__main__":
    app()
