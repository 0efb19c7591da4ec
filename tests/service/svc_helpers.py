"""Small helpers shared by the service tests."""
from __future__ import annotations

import io
import json
import time

import httpx
from PIL import Image


def jpeg(w: int = 320, h: int = 240, color=(120, 90, 60), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), color).save(out, fmt)
    return out.getvalue()


def wait_for(predicate, timeout: float = 20, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def submit(base: str, data: bytes, style: str = "modern", key: str | None = None, headers=None, **fields):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    form = {"style": style, **{k: str(v) for k, v in fields.items()}}
    return httpx.post(f"{base}/v1/jobs", data=form, files={"file": ("room.jpg", data, "image/jpeg")},
                      headers=h, timeout=30)


def sse_events(base: str, job_id: str, key: str | None = None, timeout: float = 120) -> list[tuple[str, dict]]:
    """Every SSE event of a job until the stream ends."""
    from client_api.submit_client import iter_sse

    h = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.stream("GET", f"{base}/v1/jobs/{job_id}/events", headers=h,
                      timeout=httpx.Timeout(10, read=timeout)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return list(iter_sse(r))


def ws_events(base: str, job_id: str, key: str | None = None, path: str = "/ws/transform/{}") -> list[dict]:
    from websockets.sync.client import connect

    url = base.replace("http", "ws", 1) + path.format(job_id)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    out = []
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        try:
            while True:
                out.append(json.loads(ws.recv(timeout=120)))
        except Exception as e:  # closed by the server after the terminal event
            if "ConnectionClosed" not in type(e).__name__:
                raise
    return out


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size
