"""Real components for the job service tests: redis-server, moto's S3 server, uvicorn, workers."""
from __future__ import annotations

import asyncio
import io
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import pytest
import redis as sync_redis
import uvicorn
from PIL import Image

from client_api.config import Settings
from client_api.local_stack import RedisProcess
from client_api.main import create_app
from client_api.services import Services
from client_api.worker import Worker
from restyle.server_ports import free_port

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="session")
def redis_proc():
    proc = RedisProcess()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_proc):
    sync_redis.Redis.from_url(redis_proc.url).flushall()
    return redis_proc.url


@pytest.fixture
def rdb(redis_url):
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def make_settings(redis_url, tmp_path):
    def make(**kw) -> Settings:
        base = dict(redis_url=redis_url, local_storage_dir=tmp_path / "storage", signing_secret="test-secret",
                    visibility_timeout_s=2.0, outage_backoff_s=0.05, outage_backoff_max_s=0.2,
                    webhook_backoff_s=0.05, rate_limit_per_minute=1000, redis_timeout_s=1.0,
                    triton_grpc_url="127.0.0.1:1")
        base.update(kw)
        return Settings(_env_file=None, **base)
    return make


@pytest.fixture
def s3_settings(make_settings, s3_endpoint):
    """Settings for the S3 store against moto, with a bucket of this test's own."""
    from client_api.storage import S3Storage

    s = make_settings(storage="s3", s3_endpoint_url=s3_endpoint, s3_bucket=f"b-{secrets.token_hex(4)}",
                      s3_access_key_id="test", s3_secret_access_key="test", s3_region="us-east-1")
    S3Storage(s).ensure_bucket()
    return s


class ApiServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


class WorkerThread:
    """A Worker on its own event loop in a thread (the worker process's loop, minus the process)."""

    def __init__(self, settings: Settings, pipeline, name: str):
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(settings, pipeline, name),), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _main(self, settings, pipeline, name):
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        services = Services.create(settings)
        self.ready.set()
        try:
            await Worker(services, pipeline, name).run(self.stop_event)
        finally:
            await services.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(60)
        # a worker left running would take later tests' jobs or call their Triton
        assert not self.thread.is_alive(), "the worker did not stop within 60 s"


@pytest.fixture
def start_api():
    servers = []

    def start(settings: Settings) -> ApiServer:
        servers.append(ApiServer(settings))
        return servers[-1]
    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def start_worker():
    workers = []

    def start(settings: Settings, pipeline, name: str | None = None) -> WorkerThread:
        workers.append(WorkerThread(settings, pipeline, name or f"test-worker-{len(workers)}"))
        return workers[-1]
    yield start
    for w in workers:
        w.stop()


@pytest.fixture
def worker_process(tmp_path):
    """`restyle worker` as a real process (python -m client_api.cli worker), killable."""
    import subprocess

    procs = []

    def start(settings: Settings, **env) -> subprocess.Popen:
        e = dict(os.environ)
        for name, value in settings.model_dump(exclude_none=True).items():
            if isinstance(value, list):
                value = ",".join(value)
            elif hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            e[f"RESTYLE_{name.upper()}"] = str(value)
        e.update(PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}", **env)  # explicit env wins over the settings
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "client_api.cli", "worker"], cwd=ROOT, env=e,
                                      stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]
    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


@pytest.fixture
def photo() -> bytes:
    """A small room-like photo: gradients and a few boxes (structure for the pipeline to keep)."""
    import numpy as np

    h, w = 240, 320
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = np.linspace(60, 200, w, dtype=np.uint8)[None, :, None]
    img[150:220, 40:160] = (150, 80, 40)
    img[60:120, 200:290] = (220, 220, 240)
    out = io.BytesIO()
    Image.fromarray(img).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def triton_grpc_url(triton_server):
    return triton_server.grpc_url
