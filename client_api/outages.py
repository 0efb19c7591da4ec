"""What a worker knows about its dependencies being down: one clock per dependency per process.

A dependency (the model server, storage, Redis) is *down* from the first failure a worker sees
until one of its readiness probes answers again. While it is down the worker takes no new job
(`gate`), probes with exponential backoff instead, and jobs it holds wait (`wait`) rather than fail.
The outage's start is also written to Redis (`outage:{name}`, expiring unless refreshed) so the
API can tell submitters their estimate includes it. Every transition is logged once, so the log
reads as a story: outage began, still waiting, recovered.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import metrics

log = logging.getLogger("restyle.outages")

TRITON, STORAGE, REDIS = "triton", "storage", "redis"
LABELS = {TRITON: "the model server", STORAGE: "storage", REDIS: "Redis"}
OUTAGE_KEY = "outage:{}"
STILL_DOWN_LOG_S = 30.0  # a "still waiting" line at most this often per dependency


def outage_key(name: str) -> str:
    return OUTAGE_KEY.format(name)


@dataclass
class Dependency:
    name: str
    probe: Callable[[], Awaitable[bool]]  # True when ready; must not raise
    since: float | None = None  # wall time the outage began, None while up
    _last_log: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def down(self) -> bool:
        return self.since is not None


class Outages:
    def __init__(self, deps: dict[str, Dependency], *, backoff_s: float, backoff_max_s: float, deadline_s: float,
                 redis=None):
        self.deps, self.redis = deps, redis
        self.backoff_s, self.backoff_max_s, self.deadline_s = backoff_s, backoff_max_s, deadline_s
        for name in deps:
            metrics.WORKER_DEPENDENCY_UP.labels(name).set(1)

    def __getitem__(self, name: str) -> Dependency:
        return self.deps[name]

    async def lost(self, name: str, cause: object = "") -> None:
        """A call to `name` failed: start its outage clock (once per outage)."""
        dep = self.deps[name]
        if dep.since is None:
            dep.since = dep._last_log = time.time()
            metrics.WORKER_OUTAGES.labels(name).inc()
            metrics.WORKER_DEPENDENCY_UP.labels(name).set(0)
            log.warning("outage began: %s is unreachable (%s); no new jobs are taken and jobs in hand wait up "
                        "to %.0f s for it", dep.label, str(cause)[:200] or "not ready", self.deadline_s)
        await self._publish(dep)

    async def probe(self, name: str) -> bool:
        """Ask `name` whether it is ready; end or start its outage accordingly."""
        dep = self.deps[name]
        async with dep._lock:  # concurrent consumers share one probe
            ok = await dep.probe()
            if ok and dep.since is not None:
                log.warning("recovered: %s is back after %.1f s", dep.label, time.time() - dep.since)
                dep.since = None
                metrics.WORKER_DEPENDENCY_UP.labels(name).set(1)
                await self._clear(dep)
            elif not ok:
                await self.lost(name)
                if time.time() - dep._last_log >= STILL_DOWN_LOG_S:
                    dep._last_log = time.time()
                    log.warning("still waiting for %s (down %.0f s)", dep.label, time.time() - dep.since)
        return ok

    async def wait(self, name: str, until: float | None = None, stop: Callable[[], bool] = lambda: False) -> bool:
        """Probe `name` with backoff until it is ready (True), or until wall time `until` passes or
        `stop()` says so (False). The time spent counts as waiting on that dependency."""
        delay, t0 = self.backoff_s, time.monotonic()
        try:
            while not await self.probe(name):
                if stop() or (until is not None and time.time() >= until):
                    return False
                pause = delay if until is None else max(0.0, min(delay, until - time.time()))
                await asyncio.sleep(pause)
                delay = min(self.backoff_max_s, delay * 2)
            return True
        finally:
            metrics.WORKER_DEPENDENCY_WAIT.labels(name).inc(time.monotonic() - t0)

    async def gate(self, stop: asyncio.Event) -> None:
        """Before taking a job: return once every dependency is ready, or once an outage has lasted
        longer than the deadline (then jobs are taken so that they fail at their own deadline
        instead of waiting forever in the queue)."""
        for name, dep in self.deps.items():
            if name == REDIS:
                continue  # without Redis there is nothing to take: the queue read fails and waits itself
            if dep.down or not await self.probe(name):
                await self.wait(name, until=dep.since + self.deadline_s, stop=stop.is_set)

    def deadline(self, name: str, created_at: float) -> float:
        """When a job submitted at `created_at` stops waiting for `name` and fails."""
        return max(created_at, self.deps[name].since or time.time()) + self.deadline_s

    async def _publish(self, dep: Dependency) -> None:
        if self.redis is None or dep.name == REDIS:
            return
        try:  # NX: the earliest start seen by any worker wins; the expiry outlives a few probes
            ttl = int(self.backoff_max_s * 4 + 30)
            await self.redis.set(outage_key(dep.name), f"{dep.since:.3f}", nx=True, ex=ttl)
            await self.redis.expire(outage_key(dep.name), ttl)
        except Exception:  # best effort: Redis may be down too
            pass

    async def _clear(self, dep: Dependency) -> None:
        if self.redis is None or dep.name == REDIS:
            return
        try:
            await self.redis.delete(outage_key(dep.name))
        except Exception:
            pass
