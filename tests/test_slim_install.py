"""The service install (pyproject's base dependencies, what docker/Dockerfile.api installs) in a fresh venv:
no model stack, and the job service works in it: the API and a worker (the fake pipeline) run a job through a
real redis-server, and the `restyle` command answers for the service commands."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_STACK = ("torch", "torchvision", "diffusers", "transformers", "ultralytics", "sam2", "onnxruntime", "pytriton")

# Runs inside the slim venv, away from the checkout (the installed package, not the source tree).
JOB_SCRIPT = r"""
import asyncio, io, json, sys, threading, time
import httpx, uvicorn
from PIL import Image
from client_api.config import Settings
from client_api.local_stack import RedisProcess
from client_api.main import create_app
from client_api.services import Services
from client_api.worker import Worker
from restyle.server_ports import free_port
import fake_pipeline

redis = RedisProcess()
try:
    settings = Settings(_env_file=None, redis_url=redis.url, local_storage_dir=sys.argv[1], signing_secret="slim")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    photo = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 90, 60)).save(photo, "JPEG")

    async def main():
        services = Services.create(settings)
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(services, fake_pipeline.make(0.001), "slim").run(stop))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            r = await client.post("/v1/jobs", data={"style": "modern"},
                                  files={"file": ("room.jpg", photo.getvalue(), "image/jpeg")})
            assert r.status_code == 202, r.text
            for _ in range(600):
                job = (await client.get(f"/v1/jobs/{r.json()['job_id']}")).json()
                if job["status"] in ("completed", "failed", "canceled"):
                    break
                await asyncio.sleep(0.05)
            result = await client.get(job["result"]["transformed_url"]) if job["status"] == "completed" else None
        stop.set()
        await worker
        await services.close()
        return job["status"], result.status_code if result else None

    status, download = asyncio.run(main())
    server.should_exit = True
finally:
    redis.stop()
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"status": status, "download": download, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("slim") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    # pip's cache serves the wheels; the checkout is built as a wheel (not editable): what an image gets
    done = subprocess.run([venv / "bin" / "pip", "install", "-q", str(ROOT)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_base_dependencies_leave_the_model_stack_out():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower() for d in project["dependencies"]}
    assert not names & {"torch", "torchvision", "diffusers", "transformers", "ultralytics", "sam2", "onnx",
                        "onnxruntime", "nvidia-pytriton", "accelerate", "peft", "safetensors"}
    assert {"torch", "diffusers", "ultralytics", "sam2"} <= {
        d.split("=")[0].split(">")[0].strip() for d in project["optional-dependencies"]["models"]}


def test_service_runs_a_job_without_the_model_stack(slim_venv, tmp_path):
    installed = subprocess.run([slim_venv / "bin" / "python", "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True)
    assert not {p["name"].lower() for p in json.loads(installed.stdout)} & {"torch", "diffusers", "transformers"}
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tests" / "service")}  # fake_pipeline only
    done = subprocess.run([slim_venv / "bin" / "python", "-c", JOB_SCRIPT, str(tmp_path / "storage"), json.dumps(MODEL_STACK)],
                          check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": "completed", "download": 200, "heavy": []}


def test_service_commands_answer_and_model_commands_name_the_extra(slim_venv, tmp_path):
    restyle = slim_venv / "bin" / "restyle"
    for command in (["--help"], ["api", "--help"], ["worker", "--help"], ["storage-lifecycle", "--help"],
                    ["submit", "--help"]):
        done = subprocess.run([restyle, *command], check=False, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    done = subprocess.run([restyle, "models", "build", "--profile", "tiny"], check=False, capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 2 and "pip install 'room-restyle[models]'" in done.stderr, done.stderr[-2000:]
