"""`make demo`: a sample room photo through the whole service on embedded defaults.

photo -> API (POST /v1/jobs) -> Redis queue -> worker -> Triton (tiny profile, gRPC streaming)
-> local storage -> result downloaded into out/. Tiny random weights: the picture shows that
the pipeline runs end to end, not what real checkpoints would paint.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx

from client_api.submit_client import submit_and_follow
from restyle.samples import synthetic_room
from restyle.server_ports import free_port

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out"


def wait_ready(api: str, stack: subprocess.Popen, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise SystemExit(f"`restyle serve` exited with {stack.returncode}; its log is above")
        try:
            if httpx.get(f"{api}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("the local stack was not ready in time")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    photo = OUT / "sample_room.jpg"
    cv2.imwrite(str(photo), synthetic_room(768, 512, seed=7)[:, :, ::-1])
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    restyle = Path(sys.executable).parent / "restyle"
    print(f"starting the local stack (redis, tritonserver tiny profile, API on {api}, worker)...", flush=True)
    stack = subprocess.Popen([str(restyle), "serve", "--profile", "tiny", "--port", str(port)], start_new_session=True)
    try:
        wait_ready(api, stack)
        result = OUT / "restyled_scandinavian.jpg"
        code = submit_and_follow(api, None, photo, wait=True, out=result, style="scandinavian", seed=7, steps=20)
        if code == 0:
            print(f"\nsample photo: {photo}\nrestyled:     {result}")
        return code
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
