"""End to end with the real tritonserver (tiny profile) and the real gRPC streaming client."""
from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest
from svc_helpers import image_size, sse_events, submit, wait_for, ws_events

from client_api.jobs_store import job_key
from client_api.worker import load_pipeline


@pytest.fixture
def triton_settings(make_settings, triton_grpc_url):
    return make_settings(triton_grpc_url=triton_grpc_url, visibility_timeout_s=3.0)


def status(api, job_id):
    return httpx.get(f"{api.url}/v1/jobs/{job_id}").json()


def test_photo_to_completed_job(triton_settings, start_api, start_worker, room_jpeg, tall_room_jpeg):
    api = start_api(triton_settings)
    start_worker(triton_settings, load_pipeline(triton_settings))
    assert httpx.get(f"{api.url}/ready").status_code == 200
    for photo in (room_jpeg, tall_room_jpeg):
        r = submit(api.url, photo, style="scandinavian", steps=2, seed=1)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        ws: list = []
        t = threading.Thread(target=lambda: ws.extend(ws_events(api.url, job_id)))
        t.start()
        events = sse_events(api.url, job_id, timeout=300)
        t.join(300)
        assert events[-1][0] == "completed", events[-1]
        assert ws[-1]["event"] == "completed"
        messages = {d.get("message") for _, d in events}
        assert "Applying Scandinavian style..." in messages or "Saving result..." in messages
        final = events[-1][1]
        result = httpx.get(final["result"]["transformed_url"])
        w, h = image_size(result.content)
        pw, ph = image_size(photo)
        assert abs(w / h - pw / ph) < 0.03, ((w, h), (pw, ph))  # the photo's aspect ratio
        assert image_size(httpx.get(final["result"]["thumbnail_url"]).content) == (400, 400)
        meta = final["result"]["metadata"]
        assert meta["seed"] == 1 and meta["room_type"] and 0 <= meta["quality_score"] <= 1
        assert meta["timings"]


def test_cancel_running_job_cancels_stream(triton_settings, start_api, start_worker, room_jpeg):
    api = start_api(triton_settings)
    start_worker(triton_settings, load_pipeline(triton_settings))
    job_id = submit(api.url, room_jpeg, style="modern", steps=30).json()["job_id"]
    wait_for(lambda: status(api, job_id)["status"] in ("analyzing", "generating"), timeout=120, every=0.1)
    assert httpx.delete(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "canceled"
    # the worker stops that stream and is free for the next job at once
    nxt = submit(api.url, room_jpeg, style="boho", steps=2).json()["job_id"]
    wait_for(lambda: status(api, nxt)["status"] == "completed", timeout=300, every=0.2)
    assert status(api, job_id)["status"] == "canceled" and status(api, job_id)["result"] is None


def test_killed_worker_job_completed_by_another_exactly_once(triton_settings, start_api, start_worker,
                                                             worker_process, rdb, room_jpeg):
    api = start_api(triton_settings)
    victim = worker_process(triton_settings)
    job_id = submit(api.url, room_jpeg, style="industrial", steps=4).json()["job_id"]
    wait_for(lambda: status(api, job_id)["status"] in ("analyzing", "generating"), timeout=120, every=0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    start_worker(triton_settings, load_pipeline(triton_settings))
    events = sse_events(api.url, job_id, timeout=300)
    assert events[-1][0] == "completed"
    assert rdb.hget(job_key(job_id), "deliveries") == "2"
    stats = httpx.get(f"{api.url}/v1/admin/stats").json()
    assert stats["completed"] == 1 and stats["queue"]["pending"] == 0
