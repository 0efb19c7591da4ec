from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import metrics, storage
from ..deps import ServicesDep
from ..schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> dict:
    return {"status": "ok"}


async def _check(fn, timeout: float = 3.0) -> bool:
    try:
        return bool(await asyncio.wait_for(fn(), timeout))
    except Exception:
        return False


@router.get("/ready", summary="Which dependencies are reachable: redis, storage, triton", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Redis or storage is down: jobs cannot be accepted"}})
async def ready(request: Request, services: ServicesDep):
    # at once: a black-holed dependency (a NetworkPolicy drops, not refuses) costs one timeout, not three
    names = ("redis", "storage", "triton")
    checks = dict(zip(names, await asyncio.gather(
        _check(services.redis.ping),
        _check(lambda: storage.call(services.storage.ready)),
        _check(lambda: asyncio.to_thread(request.app.state.triton_ready)))))
    missing = [name for name, ok in checks.items() if not ok]
    # Without the model server jobs are still accepted (the queue is the buffer): stay in the load balancer.
    status = "ready" if not missing else "degraded" if missing == ["triton"] else "not_ready"
    return JSONResponse({"status": status, "checks": checks, "missing": missing},
                        status_code=503 if status == "not_ready" else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus(services: ServicesDep) -> Response:
    try:
        await metrics.refresh(services)
    except Exception:  # metrics must still answer (with stale job figures) when Redis is down
        pass
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
