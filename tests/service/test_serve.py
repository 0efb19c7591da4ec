"""`restyle serve`: the local all-in-one runs a job, then Ctrl-C / SIGTERM stops every part."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from svc_helpers import jpeg, submit, wait_for

from restyle.server_ports import free_port

RESTYLE = Path(sys.executable).with_name("restyle")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_runs_a_job_then_stops_everything(tiny_artifacts, tmp_path, sig):
    port = free_port()
    env = {**os.environ, "RESTYLE_LOCAL_STORAGE_DIR": str(tmp_path / "storage")}
    proc = subprocess.Popen([str(RESTYLE), "serve", "--profile", "tiny", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{base}/ready"), timeout=600, every=0.5)
        parts = children(proc.pid)  # redis-server and tritonserver
        assert len(parts) >= 2
        job = submit(base, jpeg(400, 300), steps=2).json()["job_id"]
        wait_for(lambda: httpx.get(f"{base}/v1/jobs/{job}").json()["status"] == "completed", timeout=300,
                 every=0.2)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "Application shutdown complete" in output
    assert not [p for p in parts if alive(p)], "a part of the stack outlived `restyle serve`"


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
