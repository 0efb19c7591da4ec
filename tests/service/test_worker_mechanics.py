"""Worker mechanics with the small real pipeline: cancel, crash + redelivery, retries, delivery limit."""
from __future__ import annotations

import os
import signal
import threading
import time

import fake_pipeline
import httpx
import pytest
from svc_helpers import jpeg, sse_events, submit, wait_for

from client_api.jobs_store import job_key


def status(api, job_id):
    return httpx.get(f"{api.url}/v1/jobs/{job_id}").json()


def test_cancel_queued_job_never_runs(make_settings, start_api, start_worker, rdb):
    settings = make_settings()
    api = start_api(settings)
    job_id = submit(api.url, jpeg()).json()["job_id"]
    r = httpx.delete(f"{api.url}/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.01, calls=calls))
    wait_for(lambda: rdb.xlen(settings.queue_stream) == 0)  # taken and acknowledged
    assert calls == [] and status(api, job_id)["status"] == "canceled"
    assert [e for e, _ in sse_events(api.url, job_id)] == ["canceled"]
    assert httpx.delete(f"{api.url}/v1/jobs/{job_id}").status_code == 409


def test_cancel_running_job_stops_pipeline(make_settings, start_api, start_worker, rdb):
    settings = make_settings()
    api = start_api(settings)
    seen_cancel = threading.Event()
    slow = fake_pipeline.make(0.3)

    def pipeline(req, on_progress=None, cancel=None):
        try:
            return slow(req, on_progress, cancel)
        finally:
            if cancel.is_set():
                seen_cancel.set()
    start_worker(settings, pipeline)
    job_id = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: status(api, job_id)["status"] in ("analyzing", "generating"))
    t0 = time.time()
    assert httpx.delete(f"{api.url}/v1/jobs/{job_id}").json()["status"] == "canceled"
    assert seen_cancel.wait(5) and time.time() - t0 < 3
    wait_for(lambda: rdb.xlen(settings.queue_stream) == 0)
    final = status(api, job_id)
    assert final["status"] == "canceled" and final["result"] is None
    assert not (settings.local_storage_dir / "results" / job_id).exists()
    # the worker is free for the next job
    nxt = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: status(api, nxt)["status"] == "completed", timeout=30)


def test_delete_my_data(make_settings, start_api, start_worker, rdb):
    settings = make_settings()
    api = start_api(settings)
    start_worker(settings, fake_pipeline.make(0.01))
    job_id = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: status(api, job_id)["status"] == "completed")
    links = status(api, job_id)["result"]
    assert httpx.delete(f"{api.url}/v1/jobs/{job_id}/data").status_code == 204
    assert httpx.get(f"{api.url}/v1/jobs/{job_id}").status_code == 404
    assert rdb.exists(job_key(job_id)) == 0
    for url in (links["transformed_url"], links["thumbnail_url"], links["original_url"]):
        assert httpx.get(url).status_code == 404
    assert not any(settings.local_storage_dir.glob(f"*/{job_id}"))


def test_triton_down_past_the_deadline_fails_with_reason(make_settings, start_api, start_worker, rdb):
    """The real Triton client against a port where nothing listens: the worker takes nothing while the
    outage is younger than the deadline, then the job fails `triton_unavailable`."""
    from client_api.worker import load_pipeline

    settings = make_settings(outage_deadline_s=1.5)
    api = start_api(settings)
    job_id = submit(api.url, jpeg()).json()["job_id"]
    start_worker(settings, load_pipeline(settings))
    wait_for(lambda: rdb.exists("outage:triton"))  # workers report the outage; the API's estimate adds it
    assert status(api, job_id)["status"] == "queued"
    assert submit(api.url, jpeg()).json()["estimated_time"] > 30  # no average yet: 30 s a job, plus the outage
    events = sse_events(api.url, job_id, timeout=60)
    assert events[-1][0] == "failed"
    assert "unreachable for longer than 1.5 s" in events[-1][1]["error"]
    stats = httpx.get(f"{api.url}/v1/admin/stats").json()
    assert stats["failures_by_reason"]["triton_unavailable"] >= 1


def test_worker_killed_mid_job_is_finished_by_another_exactly_once(make_settings, start_api, worker_process,
                                                                   start_worker, rdb):
    settings = make_settings(visibility_timeout_s=1.5)
    api = start_api(settings)
    victim = worker_process(settings, RESTYLE_WORKER_PIPELINE="fake_pipeline:restyle", RESTYLE_FAKE_DELAY_S="0.4")
    job_id = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: status(api, job_id)["status"] in ("analyzing", "generating"), timeout=30)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(5)
    assert status(api, job_id)["status"] != "completed"
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.01, calls=calls))
    events = sse_events(api.url, job_id)
    assert events[-1][0] == "completed"
    assert len(calls) == 1 and rdb.hget(job_key(job_id), "deliveries") == "2"
    stats = httpx.get(f"{api.url}/v1/admin/stats").json()
    assert stats["completed"] == 1 and stats["total"] == 1
    assert stats["queue"]["pending"] == 0 and stats["queue"]["waiting"] == 0
    assert httpx.get(status(api, job_id)["result"]["transformed_url"]).status_code == 200


def test_delivery_limit_fails_job(make_settings, start_api, start_worker, rdb):
    """A job whose workers keep dying ends `failed` with a clear reason once delivered too often."""
    import asyncio

    from client_api.services import Services

    settings = make_settings(visibility_timeout_s=0.3, max_deliveries=2)
    api = start_api(settings)
    job_id = submit(api.url, jpeg()).json()["job_id"]

    async def crash_twice():  # two consumers take the entry and vanish without acking
        svc = Services.create(settings)
        await svc.queue.ensure_group()
        assert (await svc.queue.next("ghost-1", 300, 100)).deliveries == 1
        await asyncio.sleep(0.4)
        assert (await svc.queue.next("ghost-2", 300, 100)).deliveries == 2
        await svc.close()
    asyncio.run(crash_twice())
    time.sleep(0.4)
    calls: list = []
    start_worker(settings, fake_pipeline.make(0.01, calls=calls))
    events = sse_events(api.url, job_id)
    assert events[-1][0] == "failed" and "giving up" in events[-1][1]["error"]
    assert calls == []
    wait_for(lambda: rdb.xlen(settings.queue_stream) == 0)


def test_two_workers_share_the_queue(make_settings, start_api, start_worker):
    settings = make_settings()
    api = start_api(settings)
    calls_a, calls_b = [], []
    start_worker(settings, fake_pipeline.make(0.05, calls=calls_a), "a")
    start_worker(settings, fake_pipeline.make(0.05, calls=calls_b), "b")
    ids = [submit(api.url, jpeg()).json()["job_id"] for _ in range(6)]
    wait_for(lambda: all(status(api, j)["status"] == "completed" for j in ids), timeout=60)
    assert len(calls_a) + len(calls_b) == 6 and calls_a and calls_b


def test_worker_metrics_endpoint(make_settings, start_api, worker_process):
    """`restyle worker` with RESTYLE_WORKER_METRICS_PORT serves its own /metrics: outcomes, failure
    reasons, stage durations, Triton retries and jobs in flight move as it works."""
    from prometheus_client.parser import text_string_to_metric_families

    from restyle.server_ports import free_port

    port = free_port()
    settings = make_settings(worker_metrics_port=port, max_model_server_losses=2)
    api = start_api(settings)
    worker_process(settings, RESTYLE_WORKER_PIPELINE="fake_pipeline:restyle", RESTYLE_FAKE_DELAY_S="0.1")

    def scrape() -> dict:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {(s.name, *s.labels.values()): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def finish(**fields) -> dict:
        job_id = submit(api.url, jpeg(), **fields).json()["job_id"]
        wait_for(lambda: status(api, job_id)["status"] in ("completed", "failed"), timeout=30)
        return status(api, job_id)

    def up():
        try:
            return scrape()
        except httpx.TransportError:
            return None
    before = wait_for(up, timeout=30)  # the process imports torch & co. first
    assert before[("restyle_worker_jobs_in_flight",)] == 0
    assert ("restyle_worker_jobs_total", "completed") not in before

    assert finish()["status"] == "completed"
    assert finish(prompt="reject me")["error"]
    assert "went down 2 times while it ran this job" in finish(prompt="triton down")["error"]
    running = submit(api.url, jpeg()).json()["job_id"]
    wait_for(lambda: status(api, running)["status"] in ("analyzing", "generating"))
    assert scrape()[("restyle_worker_jobs_in_flight",)] == 1
    httpx.delete(f"{api.url}/v1/jobs/{running}")
    m = wait_for(lambda: (m := scrape()).get(("restyle_worker_jobs_total", "canceled")) and m, timeout=10)

    assert m[("restyle_worker_jobs_total", "completed")] == 1
    assert m[("restyle_worker_jobs_total", "failed")] == 2
    assert m[("restyle_worker_jobs_total", "canceled")] == 1
    assert m[("restyle_worker_job_failures_total", "rejected")] == 1
    assert m[("restyle_worker_job_failures_total", "crashed_model_server")] == 1
    assert m[("restyle_worker_outages_total", "triton")] == 2  # it went down with the job, twice
    assert m[("restyle_worker_dependency_up", "triton")] == 1
    assert m[("restyle_worker_jobs_in_flight",)] == 0
    for stage in fake_pipeline.STAGES:  # the completed job's timings: 0.1 s per stage
        assert m[("restyle_worker_job_stage_seconds_count", stage)] == 1
        assert m[("restyle_worker_job_stage_seconds_sum", stage)] == pytest.approx(0.1)
        assert m[("restyle_worker_job_stage_seconds_bucket", "0.05", stage)] == 0  # le comes first
        assert m[("restyle_worker_job_stage_seconds_bucket", "0.1", stage)] == 1
    assert m[("restyle_worker_job_stage_seconds_count", "total")] == 1
    assert m[("restyle_worker_job_stage_seconds_sum", "total")] >= 0.9  # 13 pipeline steps of 0.1 s
