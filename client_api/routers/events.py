"""Live progress: Server-Sent Events and WebSocket, both fed by one generator.

Subscribe first, then read the job: whatever happens after the read arrives on the
channel, whatever happened before is in the record. So a late subscriber starts with the
current state, and a reconnect after the end still gets the terminal event.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from ..deps import JobDep, ServicesDep
from ..jobs_store import TERMINAL, channel
from ..security import authenticate, bearer
from .jobs import JOB_ERRORS, base_url

router = APIRouter(tags=["events"])
KEEPALIVE_S = 15.0


def _typed(data: dict) -> dict:
    """Redis hands every hash field back as a string; clients get numbers."""
    for k, cast in (("progress", float), ("step", int), ("total_steps", int)):
        if data.get(k) is not None:
            data[k] = cast(data[k])
    return data


async def job_events(services, job_id: str, base: str) -> AsyncIterator[tuple[str, dict] | None]:
    """(event name, data) until a terminal state; None = nothing new (time for a keepalive)."""
    pubsub = services.redis.pubsub()
    await pubsub.subscribe(channel(job_id))
    try:
        job = await services.store.get(job_id)
        while True:
            if not job:
                yield "deleted", {"job_id": job_id, "error": "the job no longer exists"}
                return
            view = services.view(job_id, job, base).model_dump(mode="json")
            terminal = view["status"] in TERMINAL
            yield (view["status"] if terminal else "progress"), view
            if terminal:
                return
            while True:  # until the job ends (then the outer loop sends the full record)
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_S)
                if msg is None:
                    yield None
                    job = await services.store.get(job_id)  # re-read: also catches expiry/deletion
                    if not job or job.get("status") in TERMINAL:
                        break
                    continue
                data = _typed(json.loads(msg["data"]))
                if data.get("status") in TERMINAL:
                    job = await services.store.get(job_id)  # the full record carries the result
                    break
                yield "progress", data
    finally:
        await pubsub.aclose()


@router.get("/v1/jobs/{job_id}/events", summary="Progress as Server-Sent Events",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **JOB_ERRORS})
async def sse(request: Request, job: JobDep, services: ServicesDep) -> StreamingResponse:
    async def stream():
        yield "retry: 2000\n\n"
        async for item in job_events(services, job["id"], base_url(request, services)):
            if item is None:
                yield ": keepalive\n\n"
            else:
                yield f"event: {item[0]}\ndata: {json.dumps(item[1])}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _ws_handler(websocket: WebSocket, job_id: str):
    services = websocket.app.state.services
    await websocket.accept()
    token = bearer(websocket.headers.get("authorization")) or websocket.query_params.get("api_key")
    owner = authenticate(services.settings, token)
    job = await services.store.get(job_id) if owner and len(job_id) <= 64 else None
    if owner is None or not job or job.get("owner") != owner:
        code, msg = (4401, "missing or invalid API key") if owner is None else (4404, "job not found")
        await websocket.send_json({"event": "error", "data": {"error": msg}})
        await websocket.close(code)
        return
    base = services.settings.public_base_url or str(websocket.base_url).replace("ws", "http", 1)

    async def pump():
        async for item in job_events(services, job_id, base.rstrip("/")):
            if item is not None:
                await websocket.send_json({"event": item[0], "data": item[1]})
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
