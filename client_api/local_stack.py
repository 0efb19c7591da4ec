"""`restyle serve`: redis-server, tritonserver, API and a worker in one foreground process."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from restyle.server_ports import free_port

log = logging.getLogger("restyle.serve")


class StackError(RuntimeError):
    """A part of the local stack could not start; the message says which and what to do."""


def _api_state_file() -> Path:
    from restyle.settings import get_settings

    return get_settings().run_dir / "api.json"


@contextmanager
def api_state(host: str, port: int):
    """While the API serves, `restyle submit` on this checkout finds it without --api."""
    state = _api_state_file()
    state.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    state.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    try:
        yield url
    finally:
        state.unlink(missing_ok=True)


def running_api_url() -> str | None:
    try:
        data = json.loads(_api_state_file().read_text())
        os.kill(data["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    return data["url"]


class RedisProcess:
    """A private redis-server in a temp dir; also used by the tests. No persistence, unless `aof`:
    then AOF with fsync every second, as the chart ships it, so kill() + restart() loses at most ~1 s."""

    def __init__(self, port: int | None = None, binary: str | None = None, aof: bool = False):
        self.port = port or free_port(restartable=True)
        self.dir = tempfile.mkdtemp(prefix="restyle-redis-")
        self.cmd = [binary or shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port),
                    "--bind", "127.0.0.1", "--save", "", "--dir", self.dir, "--loglevel", "warning",
                    *(["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"])]
        self.restart()

    def restart(self) -> None:
        # Own session: Ctrl-C (or a signal to our process group) must not stop Redis before
        # the worker has let go of it; stop() ends it afterwards.
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self._wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait(self, timeout: float = 10) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_stack(profile: str, host: str, port: int) -> None:
    from .config import Settings
    from .main import create_app

    redis_proc = triton = None
    try:
        overrides: dict = {}
        if "RESTYLE_REDIS_URL" not in os.environ:
            try:
                redis_proc = RedisProcess()
            except (OSError, RuntimeError) as exc:
                raise StackError(f"could not start redis-server ({exc}): install it (`apt-get install redis-server`) "
                                 "or point RESTYLE_REDIS_URL at a running Redis") from None
            overrides["redis_url"] = redis_proc.url
            log.info("redis-server on port %d", redis_proc.port)
        if "RESTYLE_TRITON_GRPC_URL" not in os.environ:
            from restyle import server
            from restyle.profiles import get_profile
            from restyle.repository import render_repository

            model_settings = server.get_settings()
            try:  # the configs of the profile asked for, not whichever were rendered last
                render_repository(get_profile(profile), model_settings.artifacts_dir / profile,
                                  model_settings.model_repository)
            except FileNotFoundError as exc:
                raise StackError(str(exc)) from None
            for line in server.cleanup_leftovers(model_settings.model_repository):
                log.info(line)
            log.info("starting tritonserver (%s profile); loading models...", profile)
            try:
                triton = server.start(profile=profile, http_port=free_port(), grpc_port=free_port(),
                                      metrics_port=free_port(),
                                      on_wait=server.loading_reporter(lambda text: log.info("tritonserver: %s", text)))
            except server.TritonStartError as exc:
                raise StackError(str(exc)) from None
            overrides["triton_grpc_url"] = triton.grpc_url
            log.info("tritonserver (%s) ready: gRPC %s, HTTP %s", profile, triton.grpc_url, triton.http_url)
        if "RESTYLE_SIGNING_SECRET" not in os.environ:
            overrides["signing_secret"] = secrets.token_hex(32)  # API and worker share this process
        overrides.setdefault("public_base_url", os.environ.get("RESTYLE_PUBLIC_BASE_URL")
                             or f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}")
        settings = Settings(**overrides)
        Path(settings.local_storage_dir).mkdir(parents=True, exist_ok=True)
        # uvicorn takes Ctrl-C / SIGTERM while serving and re-raises the signal once it has shut
        # down. Ignored then: serve() returns, the worker stops, and the finally below stops
        # tritonserver and redis-server (the default actions would skip that or print tracebacks).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        with api_state(host, port):
            asyncio.run(_serve(settings, create_app(settings), host, port))
    except KeyboardInterrupt:
        pass
    finally:
        if triton is not None:
            triton.stop()
        if redis_proc is not None:
            redis_proc.stop()


async def _serve(settings, app, host: str, port: int) -> None:
    import uvicorn

    from .services import Services
    from .worker import Worker

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level="info"))
    services = Services.create(settings)
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(services).run(stop))
    log.info("API on %s  (docs at /docs); Ctrl-C stops everything", settings.public_base_url)
    try:
        await server.serve()  # returns on Ctrl-C / SIGTERM (uvicorn handles both)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(worker, timeout=5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass  # a job still running stays pending in Redis; that Redis is going away anyway
        await services.close()
