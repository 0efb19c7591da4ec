"""Prometheus metrics of the API process.

Request latency is measured here. Job figures (stage durations, failures by reason,
totals) are produced by workers on other hosts, so they are read from `job:stats` in
Redis at scrape time rather than counted in this process; queue depth likewise.
"""
from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

REQUEST_LATENCY = Histogram("restyle_http_request_duration_seconds", "HTTP request latency",
                            ["method", "route", "status"])


class _JobCollector:
    def __init__(self):
        self.stats: dict[str, float] = {}
        self.depth: dict[str, int] = {}

    def collect(self):
        jobs = CounterMetricFamily("restyle_jobs", "jobs by outcome", labels=["status"])
        for status in ("total", "completed", "failed", "canceled"):
            jobs.add_metric([status], self.stats.get(status, 0))
        yield jobs
        failures = CounterMetricFamily("restyle_job_failures", "failed jobs by reason", labels=["reason"])
        stages = SummaryMetricFamily("restyle_job_stage_seconds", "pipeline time per stage", labels=["stage"])
        for k, v in self.stats.items():
            if k.startswith("failed_reason:"):
                failures.add_metric([k.split(":", 1)[1]], v)
            elif k.startswith("stage_time:"):
                stage = k.split(":", 1)[1]
                stages.add_metric([stage], self.stats.get(f"stage_count:{stage}", 0), v)
        stages.add_metric(["total"], self.stats.get("completed", 0), self.stats.get("processing_time_total", 0))
        yield failures
        yield stages
        depth = GaugeMetricFamily("restyle_queue_depth", "jobs in the queue", labels=["state"])
        for state in ("waiting", "pending"):
            depth.add_metric([state], self.depth.get(state, 0))
        yield depth


_jobs = _JobCollector()
REGISTRY.register(_jobs)


async def refresh(services) -> None:
    _jobs.stats = await services.store.stats()
    _jobs.depth = await services.queue.depth()


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def middleware(request, call_next):
    t0 = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        # the route template, not the path: job ids must not explode label cardinality
        REQUEST_LATENCY.labels(request.method, getattr(route, "path", "unmatched"), str(status)).observe(
            time.perf_counter() - t0)
