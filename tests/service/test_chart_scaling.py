"""The chart's worker ScaledObject against a real redis-server, the real API and a real worker (the fake
pipeline): the two metrics KEDA's redis-streams scaler reads, computed as it does (consumer-group lag from
XINFO GROUPS, pending count from XPENDING), and the replica counts the ScaledObject's thresholds give."""
from __future__ import annotations

import math
import threading
from pathlib import Path

import fake_pipeline
import helm_python
import redis
import yaml
from svc_helpers import submit, wait_for

CHART = Path(__file__).resolve().parents[2] / "deploy" / "room-restyle"
REQUIRED = {"storage": {"accessKeyId": "id", "secretAccessKey": "key"},  # the values the chart cannot default
            "redis": {"external": {"url": "redis://redis.example:6379/0", "address": "redis.example:6379"}}}
JOBS = 5


def worker_scaled_object() -> dict:
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(values=REQUIRED, name="rr", namespace="restyle")
    return next(d for d in yaml.safe_load_all(files["room-restyle/templates/worker.yaml"]) if d and d["kind"] == "ScaledObject")


def scaler_metric(rdb, metadata: dict) -> int | None:
    """What KEDA's redis-streams scaler reports for one trigger (pkg/scalers/redis_streams_scaler.go)."""
    stream, group = metadata["stream"], metadata["consumerGroup"]
    if "lagCount" in metadata:  # lagFactor: XINFO GROUPS' lag; XLEN before the group exists
        groups = {g["name"]: g for g in rdb.xinfo_groups(stream)} if rdb.exists(stream) else {}
        if group not in groups:
            return rdb.xlen(stream) if rdb.exists(stream) else 0
        return int(groups[group]["lag"] or 0)  # go-redis reads Redis' NULL lag as 0
    try:
        return int(rdb.xpending(stream, group)["pending"])  # xPendingFactor
    except redis.ResponseError as exc:  # NOGROUP: no worker has created the group yet; KEDA logs the error
        assert "NOGROUP" in str(exc)
        return None


def keda_replicas(so: dict, metrics: dict[str, int]) -> int:
    """KEDA's decision: no trigger above its activation value -> minReplicaCount; otherwise the HPA it made
    (AverageValue targets): the largest ceil(metric / target) over the triggers, within [max(min, 1), max].
    A trigger whose query failed (None) is neither active nor counted."""
    spec = so["spec"]
    targets, active = {}, False
    for t in spec["triggers"]:
        meta = t["metadata"]
        targets[t["name"]] = int(meta.get("lagCount") or meta["pendingEntriesCount"])
        active |= (metrics[t["name"]] or 0) > int(meta.get("activationLagCount", "0"))
    if not active:
        return spec["minReplicaCount"]
    wanted = max(math.ceil(metrics[name] / target) for name, target in targets.items() if metrics[name] is not None)
    return min(spec["maxReplicaCount"], max(spec["minReplicaCount"], 1, wanted))


def test_worker_replicas_follow_the_queue(make_settings, start_api, start_worker, rdb, photo):
    so = worker_scaled_object()
    triggers = {t["name"]: t["metadata"] for t in so["spec"]["triggers"]}
    settings = make_settings(worker_concurrency=2)  # two consumers: like two worker pods
    assert (triggers["lag"]["stream"], triggers["lag"]["consumerGroup"]) == (settings.queue_stream,
                                                                             settings.queue_group)

    def state() -> tuple[dict[str, int], int]:
        metrics = {name: scaler_metric(rdb, meta) for name, meta in triggers.items()}
        return metrics, keda_replicas(so, metrics)

    # nothing queued yet (no stream: lag reads 0; the group is made by the first worker): zero
    assert state() == ({"lag": 0, "pending": None}, 0)

    api = start_api(settings)
    for _ in range(JOBS):
        assert submit(api.url, photo).status_code == 202
    # queued, no worker ever started (before the group exists the lag trigger reads XLEN): ceil(5 / lagCount 2)
    assert state() == ({"lag": JOBS, "pending": None}, 3)

    release = threading.Event()
    fake = fake_pipeline.make(delay_s=0.001)

    def held(req, on_progress=None, cancel=None):  # the fake pipeline, kept busy until the test lets go
        release.wait(60)
        return fake(req, on_progress, cancel)

    start_worker(settings, held)
    wait_for(lambda: scaler_metric(rdb, triggers["pending"]) == 2)
    # 3 waiting, 2 running: max(ceil(3 / 2), ceil(2 / 1)) = 2
    assert state() == ({"lag": JOBS - 2, "pending": 2}, 2)

    release.set()
    wait_for(lambda: rdb.xlen(settings.queue_stream) == 0, timeout=60)
    assert state() == ({"lag": 0, "pending": 0}, 0)  # all done: back to zero

    # one job running, nothing waiting: the pending trigger keeps its worker (lag alone would say zero)
    release.clear()
    assert submit(api.url, photo).status_code == 202
    wait_for(lambda: scaler_metric(rdb, triggers["pending"]) == 1)
    metrics, replicas = state()
    assert metrics == {"lag": 0, "pending": 1} and replicas == 1
    lag_only = {**so, "spec": {**so["spec"], "triggers": [t for t in so["spec"]["triggers"] if t["name"] == "lag"]}}
    assert keda_replicas(lag_only, {"lag": 0}) == 0
    release.set()
    wait_for(lambda: rdb.xlen(settings.queue_stream) == 0, timeout=60)
