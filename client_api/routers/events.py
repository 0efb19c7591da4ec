"""Live progress: Server-Sent Events and WebSocket, both fed by one generator.

Watch first, then read the job: whatever happens after the read arrives through the watch,
whatever happened before is in the record. So a late subscriber starts with the current
state, and a reconnect after the end still gets the terminal event. Watches come from the
process's EventHub (events_hub.py): a watcher costs no Redis connection.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from ..deps import JobDep, ServicesDep
from ..events_hub import EventHub, EventsUnavailable, Final
from ..jobs_store import TERMINAL
from ..security import authenticate, bearer
from .jobs import JOB_ERRORS, base_url

router = APIRouter(tags=["events"])
# The last event of a stream that cannot go on; the client reconnects (EventSource does so
# by itself) and starts again from the job's current state.
UNAVAILABLE = "unavailable"


def _unavailable(job_id: str) -> dict:
    return {"job_id": job_id, "error": "live progress was interrupted (the job store is unreachable or the "
            "server is restarting); reconnect to resume", "retry_after": 5}


async def job_events(services, hub: EventHub, job_id: str, base: str) -> AsyncIterator[tuple[str, str] | None]:
    """(event name, its data as JSON) until a terminal state; None = nothing new (time for a keepalive)."""
    watch = None
    try:
        await hub.start()
        watch = hub.watch(job_id)
        job, frames = await services.store.get(job_id), {}
        while True:
            if not job:
                yield "deleted", json.dumps({"job_id": job_id, "error": "the job no longer exists"})
                return
            if base not in frames:  # a terminal record's frames are shared by all its watchers
                view = services.view(job_id, job, base)
                frames[base] = (view.status if view.status in TERMINAL else "progress", view.model_dump_json())
            name, data = frames[base]
            yield name, data
            if name in TERMINAL:
                # Let the job's other watchers send theirs before this stream's teardown runs.
                await asyncio.sleep(0)
                return
            while True:  # until the job ends (then the outer loop sends the full record)
                item = await watch.next()
                if item is None:  # the hub's keepalive: the job is still running
                    yield None
                elif isinstance(item, Final):
                    job, frames = item.record, item.frames
                    break
                else:
                    yield "progress", item
    except (EventsUnavailable, RedisError):
        yield UNAVAILABLE, json.dumps(_unavailable(job_id))
    finally:
        if watch is not None:
            watch.close()


@router.get("/v1/jobs/{job_id}/events", summary="Progress as Server-Sent Events",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **JOB_ERRORS})
async def sse(request: Request, job: JobDep, services: ServicesDep) -> StreamingResponse:
    async def stream():
        yield "retry: 2000\n\n"
        async for item in job_events(services, request.app.state.events, job["id"], base_url(request, services)):
            if item is None:
                yield ": keepalive\n\n"
            else:
                yield f"event: {item[0]}\ndata: {item[1]}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _ws_handler(websocket: WebSocket, job_id: str):
    services = websocket.app.state.services
    await websocket.accept()
    token = bearer(websocket.headers.get("authorization")) or websocket.query_params.get("api_key")
    owner = authenticate(services.settings, token)
    try:
        job = await services.store.get(job_id) if owner and len(job_id) <= 64 else None
    except RedisError:
        await websocket.send_json({"event": UNAVAILABLE, "data": _unavailable(job_id)})
        await websocket.close(1013)  # "try again later"
        return
    if owner is None or not job or job.get("owner") != owner:
        code, msg = (4401, "missing or invalid API key") if owner is None else (4404, "job not found")
        await websocket.send_json({"event": "error", "data": {"error": msg}})
        await websocket.close(code)
        return
    base = services.settings.public_base_url or str(websocket.base_url).replace("ws", "http", 1)

    async def pump():
        async for item in job_events(services, websocket.app.state.events, job_id, base.rstrip("/")):
            if item is not None:  # the data is JSON already
                await websocket.send_text(f'{{"event": {json.dumps(item[0])}, "data": {item[1]}}}')
        await websocket.close()

    sender = asyncio.create_task(pump())
    try:
        while not sender.done():  # notice a client that leaves, so the subscription ends with it
            recv = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({sender, recv}, return_when=asyncio.FIRST_COMPLETED)
            if recv in done and recv.result()["type"] == "websocket.disconnect":
                break
            if recv not in done:
                recv.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sender.cancel()


router.add_api_websocket_route("/ws/transform/{job_id}", _ws_handler)
router.add_api_websocket_route("/v1/jobs/{job_id}/ws", _ws_handler)
