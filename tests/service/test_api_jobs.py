"""Submit → progress over SSE and WebSocket → completed → result downloadable (fake pipeline)."""
from __future__ import annotations

import fake_pipeline
import httpx
import pytest
from svc_helpers import image_size, sse_events, submit, wait_for, ws_events


@pytest.fixture
def stack(make_settings, start_api, start_worker):
    settings = make_settings()
    api = start_api(settings)
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.02, calls=calls))
    api.calls = calls
    return api


def test_submit_events_and_download(stack, photo):
    r = submit(stack.url, photo, style="Mid Century Modern", room_type="bedroom", seed=7, steps=4)
    assert r.status_code == 202, r.text
    body = r.json()
    job_id = body["job_id"]
    assert body["status_url"].endswith(f"/v1/jobs/{job_id}")
    assert body["websocket_url"].startswith("ws://") and body["events_url"].endswith("/events")
    assert body["estimated_time"] > 0

    events = sse_events(stack.url, job_id)
    names = [e for e, _ in events]
    assert names[-1] == "completed" and set(names[:-1]) == {"progress"}
    messages = [d.get("message") for _, d in events]
    # the stream may start after the first stages (a late subscriber gets the current state first)
    assert "Applying Mid Century Modern style..." in messages
    progress = [d["progress"] for _, d in events]
    assert progress == sorted(progress) and progress[-1] == 1.0

    final = events[-1][1]
    assert final["status"] == "completed" and final["style"] == "mid-century-modern"
    meta = final["result"]["metadata"]
    assert meta["room_type"] == "bedroom" and meta["seed"] == 7 and meta["quality_score"] == 0.75
    assert meta["detections"][0]["class_name"] == "couch" and "diffusion" in meta["timings"]
    result = httpx.get(final["result"]["transformed_url"])
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert image_size(result.content) == image_size(photo)  # the photo's aspect ratio (and size here)
    assert image_size(httpx.get(final["result"]["thumbnail_url"]).content) == (400, 400)
    assert httpx.get(final["result"]["original_url"]).status_code == 200
    # the redirect endpoint leads to the same bytes
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", follow_redirects=True).content == result.content
    # the request went through with the canonical style and options
    req = stack.calls[0]
    assert (req.style, req.room_type, req.seed, req.steps) == ("mid-century-modern", "bedroom", 7, 4)


def test_late_subscribers_get_terminal_state(stack, photo):
    job_id = submit(stack.url, photo).json()["job_id"]
    wait_for(lambda: httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "completed")
    # a reconnect after the end still gets the terminal event, over SSE and over WebSocket
    assert [e for e, _ in sse_events(stack.url, job_id)] == ["completed"]
    for path in ("/ws/transform/{}", "/v1/jobs/{}/ws"):
        msgs = ws_events(stack.url, job_id, path=path)
        assert [m["event"] for m in msgs] == ["completed"]
        assert msgs[0]["data"]["result"]["transformed_url"]


def test_websocket_live_progress(stack, photo):
    job_id = submit(stack.url, photo).json()["job_id"]
    msgs = ws_events(stack.url, job_id)
    assert msgs[-1]["event"] == "completed"
    assert any(m["data"].get("stage") == "diffusion" for m in msgs[:-1])


def test_legacy_paths_share_handlers(stack, photo):
    r = httpx.post(f"{stack.url}/transform/submit", data={"style": "boho"},
                   files={"file": ("a.jpg", photo, "image/jpeg")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    wait_for(lambda: httpx.get(f"{stack.url}/transform/status/{job_id}").json()["status"] == "completed")
    v1 = httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()
    legacy = httpx.get(f"{stack.url}/transform/status/{job_id}").json()
    assert legacy["status"] == v1["status"] and legacy["result"]["metadata"] == v1["result"]["metadata"]
    assert httpx.delete(f"{stack.url}/transform/{job_id}").status_code == 409  # already finished


def test_styles_root_health_metrics(stack):
    styles = httpx.get(f"{stack.url}/v1/styles").json()
    assert {"modern", "scandinavian", "boho", "industrial", "minimalist"} <= {s["name"] for s in styles}
    assert all(s["description"] for s in styles)
    assert httpx.get(f"{stack.url}/v1").json()["styles"] == styles  # the JSON index; / is the studio
    assert httpx.get(f"{stack.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/ready")
    assert ready.status_code == 200  # no Triton at 127.0.0.1:1: degraded, jobs still accepted
    assert ready.json() == {"status": "degraded", "checks": {"redis": True, "storage": True, "triton": False},
                            "missing": ["triton"]}
    metrics = httpx.get(f"{stack.url}/metrics").text
    for name in ("restyle_http_request_duration_seconds", "restyle_queue_depth", "restyle_jobs_total",
                 "restyle_job_stage_seconds"):
        assert name in metrics


def test_admin_stats(stack, photo):
    job_id = submit(stack.url, photo).json()["job_id"]
    wait_for(lambda: httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "completed")
    stats = httpx.get(f"{stack.url}/v1/admin/stats").json()
    assert stats["total"] == 1 and stats["completed"] == 1 and stats["failed"] == 0
    assert stats["average_processing_time_s"] > 0
    assert stats["queue"] == {"waiting": 0, "pending": 0, "consumers": 1}
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'restyle_job_stage_seconds_count{stage="diffusion"} 1.0' in metrics


def test_unknown_job_and_pipeline_rejection(stack, photo):
    assert httpx.get(f"{stack.url}/v1/jobs/nope").status_code == 404
    assert httpx.get(f"{stack.url}/v1/jobs/{'x' * 500}").status_code == 404
    job_id = submit(stack.url, photo, prompt="reject me").json()["job_id"]
    events = sse_events(stack.url, job_id)
    assert events[-1][0] == "failed"
    assert "refused this request" in events[-1][1]["error"]


def test_stage_messages():
    from client_api.worker import progress_update
    from restyle.client import Progress

    expected = {"detection": "Detecting furniture...", "segmentation": "Creating masks...",
                "room_classification": "Analyzing room...", "depth": "Generating depth map...",
                "edges": "Detecting edges...", "diffusion": "Applying Japandi style...",
                "quality": "Validating quality..."}
    for stage, message in expected.items():
        u = progress_update(Progress(stage, 0.5, 3 if stage == "diffusion" else None, 20), "japandi")
        assert u["message"] == message and u["progress"] == 0.5
        assert u["status"] == ("generating" if stage in ("diffusion", "quality") else "analyzing")
    assert progress_update(Progress("preprocess", 0.0), "modern")["progress"] == 0.05
    assert progress_update(Progress("postprocess", 1.0), "modern")["progress"] == 0.95
