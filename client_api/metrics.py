"""Prometheus metrics of the API process and of each worker process.

API (/metrics): request latency is measured here. Job figures (stage durations, failures
by reason, totals) are produced by workers on other hosts, so they are read from
`job:stats` in Redis at scrape time rather than counted in this process; queue depth likewise.

Worker (its own endpoint on RESTYLE_WORKER_METRICS_PORT): what this worker did, counted
live from the same increments it adds to `job:stats`, plus Triton retries and jobs in flight.
Named restyle_worker_* so that summing over API and workers never counts a job twice.
"""
from __future__ import annotations

import time

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, generate_latest, start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

REQUEST_LATENCY = Histogram("restyle_http_request_duration_seconds", "HTTP request latency",
                            ["method", "route", "status"])


class _JobCollector:
    def __init__(self):
        self.stats: dict[str, float] = {}
        self.depth: dict[str, int] = {}
        self.outage_s = 0.0

    def collect(self):
        jobs = CounterMetricFamily("restyle_jobs", "jobs by outcome", labels=["status"])
        for status in ("total", "completed", "failed", "canceled"):
            jobs.add_metric([status], self.stats.get(status, 0))
        yield jobs
        failures = CounterMetricFamily("restyle_job_failures", "failed jobs by reason", labels=["reason"])
        for reason, n in _named(self.stats, "failed_reason").items():
            failures.add_metric([reason], n)
        stages = SummaryMetricFamily("restyle_job_stage_seconds", "pipeline time per stage", labels=["stage"])
        for stage, seconds in _named(self.stats, "stage_time").items():
            stages.add_metric([stage], self.stats.get(f"stage_count:{stage}", 0), seconds)
        stages.add_metric(["total"], self.stats.get("completed", 0), self.stats.get("processing_time_total", 0))
        yield failures
        yield stages
        depth = GaugeMetricFamily("restyle_queue_depth", "jobs in the queue", labels=["state"])
        for state in ("waiting", "pending"):
            depth.add_metric([state], self.depth.get(state, 0))
        yield depth
        yield GaugeMetricFamily("restyle_outage_seconds", "how long the current outage of Triton or storage that "
                                "workers report has lasted (0: none)", value=self.outage_s)


def _named(stats: dict[str, float], kind: str) -> dict[str, float]:
    """{name: value} of the `kind:name` entries of job:stats increments (see jobs_store)."""
    prefix = kind + ":"
    return {k[len(prefix):]: v for k, v in stats.items() if k.startswith(prefix)}


_jobs = _JobCollector()
REGISTRY.register(_jobs)

WORKER_REGISTRY = CollectorRegistry()
ProcessCollector(registry=WORKER_REGISTRY)
WORKER_JOBS = Counter("restyle_worker_jobs", "jobs this worker finished, by outcome", ["status"],
                      registry=WORKER_REGISTRY)
WORKER_FAILURES = Counter("restyle_worker_job_failures", "jobs this worker failed, by reason", ["reason"],
                          registry=WORKER_REGISTRY)
WORKER_STAGE_SECONDS = Histogram(
    "restyle_worker_job_stage_seconds", "pipeline time per stage of completed jobs (total: the whole job)",
    ["stage"], registry=WORKER_REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600))
# Outages (see outages.py); dependency = triton | storage | redis
WORKER_OUTAGES = Counter("restyle_worker_outages", "outages this worker saw begin, by dependency", ["dependency"],
                         registry=WORKER_REGISTRY)
WORKER_DEPENDENCY_UP = Gauge("restyle_worker_dependency_up", "1 while the dependency answers, 0 during an outage",
                             ["dependency"], registry=WORKER_REGISTRY)
WORKER_DEPENDENCY_WAIT = Counter("restyle_worker_dependency_wait_seconds",
                                 "time consumers spent waiting for a dependency (before taking a job or holding one)",
                                 ["dependency"], registry=WORKER_REGISTRY)
WORKER_JOBS_WAITING = Gauge("restyle_worker_jobs_waiting", "jobs this worker holds while waiting for a dependency",
                            ["dependency"], registry=WORKER_REGISTRY)
WORKER_IN_FLIGHT = Gauge("restyle_worker_jobs_in_flight", "jobs this worker is handling now",
                         registry=WORKER_REGISTRY)


def job_finished(status: str, stats: dict[str, float] | None = None) -> None:
    """Count a job this worker took to `status`; `stats` = the increments it added to job:stats."""
    stats = stats or {}
    WORKER_JOBS.labels(status).inc()
    for reason, n in _named(stats, "failed_reason").items():
        WORKER_FAILURES.labels(reason).inc(n)
    for stage, seconds in _named(stats, "stage_time").items():
        WORKER_STAGE_SECONDS.labels(stage).observe(seconds)
    if "processing_time_total" in stats:
        WORKER_STAGE_SECONDS.labels("total").observe(stats["processing_time_total"])


def serve_worker_metrics(port: int):
    """Serve WORKER_REGISTRY at http://0.0.0.0:port/metrics from a daemon thread; returns the server."""
    server, _ = start_http_server(port, registry=WORKER_REGISTRY)
    return server


async def refresh(services) -> None:
    _jobs.stats = await services.store.stats()
    _jobs.depth = await services.queue.depth()
    _jobs.outage_s = await services.queue.outage_s()


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class RequestMetrics:
    """Times each HTTP request to its response's start, labelled by route template. Plain ASGI:
    Starlette's @app.middleware("http") costs extra tasks and streams on every request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            observed = True
            route = scope.get("route")  # set by the router when a route matched
            # the route template, not the path: job ids must not explode label cardinality
            REQUEST_LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"), str(status)).observe(
                time.perf_counter() - t0)

        async def timed_send(message):
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not observed:
                observe(500)
