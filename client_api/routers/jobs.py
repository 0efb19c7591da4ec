"""Jobs: submit, status, cancel, delete data, result download. /transform/* reuses these handlers."""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from restyle.contract import (
    MAX_PROMPT_CHARS,
    MAX_ROOM_TYPE_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MODES,
    SPEEDS,
    InvalidRequest,
    parse_request,
)

from .. import jobs_store, owner_jobs, storage, uploads, webhooks
from ..deps import IdempotencyKey, JobDep, OwnerDep, ServicesDep, owned_job
from ..errors import AppError
from ..jobs_store import STATS_KEY, TERMINAL, idempotency_key, now
from ..outages import LABELS
from ..schemas import JobCreated, JobView, error_responses
from ..storage import NotFound, job_prefixes, original_key

router = APIRouter(tags=["jobs"])

# 400: a malformed multipart body; 404: from_job names no job of the caller's
SUBMIT_ERRORS = error_responses(400, 401, 404, 409, 413, 415, 422, 429, 503)
JOB_ERRORS = error_responses(401, 404, 422, 503)  # every route that looks a job up
CANCEL_ERRORS = {**JOB_ERRORS, **error_responses(409)}


def base_url(request: Request, services) -> str:
    return (services.settings.public_base_url or str(request.base_url)).rstrip("/")


def job_links(base: str, job_id: str) -> dict:
    parts = urlsplit(base)
    ws = parts._replace(scheme="wss" if parts.scheme == "https" else "ws").geturl()
    return {"status_url": f"{base}/v1/jobs/{job_id}", "events_url": f"{base}/v1/jobs/{job_id}/events",
            "websocket_url": f"{ws}/ws/transform/{job_id}"}


async def _check_webhook(url: str | None, settings) -> None:
    if url is None:
        return
    try:
        webhooks.host_port(url)
        if not settings.webhook_secret:
            raise AppError(422, "webhooks_disabled",
                           "this server has no webhook secret configured (RESTYLE_WEBHOOK_SECRET)")
        # the worker checks again before each delivery: DNS answers can change meanwhile
        await webhooks.resolve(url, allow_private=settings.webhook_allow_private,
                               timeout_s=settings.webhook_timeout_s)
    except webhooks.WebhookRefused as e:
        raise AppError(422, e.code, e.message) from None


async def _read_limited(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise AppError(413, "file_too_large", f"the file is larger than {limit} bytes")
    return data


def _estimate(stats: dict, depth: dict[str, int], outage_s: float) -> float:
    """Seconds until a job queued now is done: the average job's time, times the jobs ahead per worker;
    during an outage plus as long again as it has lasted so far (the best guess of what is left)."""
    completed = float(stats.get("completed", 0))
    avg = float(stats.get("processing_time_total", 0)) / completed if completed else 30.0
    return round(avg * (1 + (depth["waiting"] + depth["pending"]) / max(1, depth["consumers"])) + outage_s, 1)


async def _original_of(job: dict, services) -> bytes:
    try:
        return await storage.call(services.storage.get, job["original_key"])
    except NotFound:
        days = services.settings.upload_retention_days
        raise AppError(409, "original_gone", f"that job's photo is no longer stored (uploads are kept {days} days); "
                       "upload it again") from None


async def _claim_idempotency(services, owner: str, key: str, fingerprint: str, job_id: str) -> str | None:
    """Reserve the key for job_id; if taken, the earlier job's id (same request) or 409."""
    rkey = idempotency_key(owner, key)
    value = f"{fingerprint} {job_id}"
    ttl = services.settings.idempotency_ttl_s
    if await services.redis.set(rkey, value, nx=True, ex=ttl):
        return None
    old = await services.redis.get(rkey) or ""
    old_fp, _, old_id = old.partition(" ")
    if old_id and not await services.store.get(old_id):  # that job's data was deleted: start afresh
        await services.redis.set(rkey, value, ex=ttl)
        return None
    if old_fp != fingerprint:
        raise AppError(409, "idempotency_conflict",
                       "this Idempotency-Key was already used with a different request")
    return old_id


@router.post("/v1/jobs", status_code=202, response_model=JobCreated, responses=SUBMIT_ERRORS,
             summary="Submit a room photo and a style")
async def submit(
    request: Request, response: Response, services: ServicesDep, owner: OwnerDep,
    style: Annotated[str, Form(max_length=64, description="a name from GET /v1/styles")],
    file: Annotated[UploadFile | None, File(description="room photo: JPEG, PNG or WebP")] = None,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS, description="free text added to the style")] = None,
    room_type: Annotated[str | None, Form(max_length=MAX_ROOM_TYPE_CHARS,
                                          description="skip room classification and use this")] = None,
    seed: Annotated[int | None, Form(ge=0, le=MAX_SEED)] = None,
    steps: Annotated[int | None, Form(ge=1, le=MAX_STEPS, description="default: the speed mode's")] = None,
    mode: Annotated[Literal[MODES] | None, Form(description="what to change")] = None,
    speed: Annotated[Literal[SPEEDS] | None, Form(description="quality (default), balanced or fast")] = None,
    webhook_url: Annotated[str | None, Form(max_length=2048)] = None,
    from_job: Annotated[str | None, Form(max_length=64, description="instead of a file: restyle the photo of "
                                         "this earlier job of yours again")] = None,
    idempotency_key: IdempotencyKey = None,
) -> JobCreated:
    s = services.settings
    if (file is None) == (from_job is None):
        raise AppError(422, "photo_required", "send either a photo as `file` or an earlier job's id as `from_job`")
    # The request's edge: everything the pipeline would refuse is refused here, before a
    # rate-limit token is spent or anything is stored.
    try:
        gen = parse_request(style=style, prompt=prompt, room_type=room_type, seed=seed, steps=steps, mode=mode,
                            speed=speed)
    except InvalidRequest as e:
        raise AppError(422, "unknown_style" if e.field == "style" else f"invalid_{e.field}", str(e)) from None
    await _check_webhook(webhook_url, s)
    source = await owned_job(from_job, owner, services) if from_job is not None else None
    retry_after = await request.app.state.limiter.hit(owner)  # Redis down → 503, nothing made
    if retry_after is not None:
        raise AppError(429, "rate_limited", "too many jobs submitted; slow down",
                       {"Retry-After": str(max(1, round(retry_after + 0.5)))})

    if source is not None:  # its original was checked when it was uploaded
        raw, as_sent = await _original_of(source, services), True
    else:
        raw = await _read_limited(file, s.max_upload_bytes)
        as_sent = uploads.check(raw, max_bytes=s.max_upload_bytes, max_pixels=s.max_pixels)  # header only
    params = {**gen.to_dict(), "webhook_url": webhook_url}
    job_id = uuid.uuid4().hex
    base = base_url(request, services)
    if idempotency_key:
        fp = hashlib.sha256(hashlib.sha256(raw).digest() + json.dumps(params, sort_keys=True).encode()).hexdigest()
        existing = await _claim_idempotency(services, owner, idempotency_key, fp, job_id)
        if existing:
            job = await services.store.get(existing) or {}
            return JobCreated(job_id=existing, status=job.get("status", "queued"),
                              estimated_time=_estimate(await services.store.stats(), await services.queue.depth(),
                                                       await services.queue.outage_s()),
                              **job_links(base, existing))
    try:
        image = raw if as_sent else await asyncio.to_thread(uploads.to_jpeg, raw, max_pixels=s.max_pixels)
        # A seed fixed now makes a redelivered job reproduce the same picture.
        params.setdefault("seed", secrets.randbelow(2**31))
        # a copy even for from_job: deleting one job's data never breaks another
        await storage.call(services.storage.put, original_key(job_id), image)
        created = now()
        fields = {"owner": owner, "status": "queued", "progress": "0", "stage": "queued",
                  "message": "Waiting in queue...", "created_at": created, "style": gen.style,
                  "params": json.dumps(params), "original_key": original_key(job_id), "base_url": base,
                  "webhook_url": webhook_url or "", "deliveries": "0"}
        # Record + enqueue, both or neither; the estimate's reads ride along: one round trip.
        pipe = services.redis.pipeline(transaction=True)
        services.store.create_into(pipe, job_id, fields)
        owner_jobs.add_into(pipe, owner, job_id, created, s.job_ttl)
        services.queue.enqueue_into(pipe, job_id)
        pipe.hgetall(STATS_KEY)
        services.queue.depth_into(pipe)
        services.queue.outage_into(pipe)
        *_, stats, groups, length, outages = await pipe.execute()
    except BaseException:
        await _undo_submit(services, owner, idempotency_key, job_id)
        raise
    return JobCreated(job_id=job_id, status="queued", estimated_time=_estimate(stats, services.queue.depth_from(
        groups, length), services.queue.outage_from(outages)), **job_links(base, job_id))


async def _undo_submit(services, owner, idempotency_key, job_id) -> None:
    """Leave nothing half-made: no orphan upload, no idempotency key pointing nowhere."""
    for prefix in job_prefixes(job_id):
        try:
            await storage.call(services.storage.delete_prefix, prefix)
        except Exception:
            pass
    if idempotency_key:
        try:
            rkey = jobs_store.idempotency_key(owner, idempotency_key)
            if (await services.redis.get(rkey) or "").endswith(job_id):
                await services.redis.delete(rkey)
        except Exception:
            pass


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=JOB_ERRORS, summary="Job status and result")
async def get_job(request: Request, job: JobDep, services: ServicesDep) -> JobView:
    view = services.view(job["id"], job, base_url(request, services))
    if view.status == "queued":
        view.queue_position = await services.queue.position(job["id"])
        # the queue does not move while workers wait out an outage: say so, as a held job does
        if down := await services.queue.down():
            view.waiting_for = down
            view.message = f"Waiting for {LABELS[down]}; the job starts once it is back"
    return view


@router.delete("/v1/jobs/{job_id}", response_model=JobView, responses=CANCEL_ERRORS, summary="Cancel a job")
async def cancel_job(request: Request, job: JobDep, services: ServicesDep) -> JobView:
    if job["status"] in TERMINAL or not await services.store.finish(
            job["id"], "canceled", {"message": "Canceled", "error": "canceled by the client"}):
        raise AppError(409, "already_finished", "the job has already finished; nothing to cancel")
    # A worker running it sees the status change and cancels its Triton stream.
    services.notify(job["id"])
    return services.view(job["id"], await services.store.get(job["id"]) or job, base_url(request, services))


@router.delete("/v1/jobs/{job_id}/data", status_code=204, responses=JOB_ERRORS,
               summary="Delete the job's images and record")
async def delete_job_data(job: JobDep, services: ServicesDep) -> Response:
    # Cancel first so a worker that holds it stops instead of writing results back.
    await services.store.finish(job["id"], "canceled", {"error": "data deleted by the client"})
    for prefix in job_prefixes(job["id"]):
        await storage.call(services.storage.delete_prefix, prefix)
    await services.store.delete(job["id"])
    await owner_jobs.remove(services.redis, job["owner"], job["id"])
    return Response(status_code=204)


@router.get("/v1/jobs/{job_id}/result", status_code=307, response_class=RedirectResponse,
            responses=CANCEL_ERRORS, summary="Redirect to a signed download link of the result")
async def get_result(request: Request, job: JobDep, services: ServicesDep,
                     kind: Literal["transformed", "thumbnail", "original"] = "transformed"):
    if job["status"] != "completed":
        raise AppError(409, "not_completed", f"the job is {job['status']}, not completed")
    view = services.view(job["id"], job, base_url(request, services))
    url = {"transformed": view.result.transformed_url, "thumbnail": view.result.thumbnail_url,
           "original": view.result.original_url}[kind]
    return RedirectResponse(url, status_code=307)
