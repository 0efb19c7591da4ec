"""The caller's own jobs: the history listing and downloads as attachments."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .. import owner_jobs, storage
from ..deps import JobDep, OwnerDep, ServicesDep
from ..errors import AppError
from ..schemas import JobList, error_responses
from ..storage import NotFound
from .jobs import CANCEL_ERRORS, base_url

router = APIRouter(tags=["jobs"])

# what a download may ask for -> the job record's field holding its storage key
DOWNLOADS = {"transformed": "result_key", "original": "original_key", "depth": "depth_key", "edges": "edge_key"}


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 422, 503),
            summary="Your jobs, newest first (cursor-paginated)")
async def list_jobs(request: Request, owner: OwnerDep, services: ServicesDep,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20,
                    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the page "
                                                        "before")] = None) -> JobList:
    jobs, next_cursor = await owner_jobs.page(services.store, owner, limit, cursor)
    base = base_url(request, services)
    return JobList(jobs=[services.view(job_id, job, base) for job_id, job in jobs], next_cursor=next_cursor)


def attachment_name(job: dict, kind: str) -> str:
    """<style>-<job id>.jpg for the result, with the kind added for the other pictures."""
    suffix = "" if kind == "transformed" else f"-{kind}"
    return f"{job.get('style') or 'room'}-{job['id']}{suffix}.jpg"


@router.get("/v1/jobs/{job_id}/download", response_class=Response, responses={
    200: {"content": {"image/jpeg": {}}, "description": "the picture, as an attachment"}, **CANCEL_ERRORS},
    summary="Download the result (or the original, depth or edge map) as a named attachment")
async def download(job: JobDep, services: ServicesDep,
                   kind: Literal["transformed", "original", "depth", "edges"] = "transformed") -> Response:
    # Through the API rather than a redirect: a browser keeps Content-Disposition's filename only
    # for a same-origin response, and results may live on R2 under another origin.
    if kind != "original" and job["status"] != "completed":
        raise AppError(409, "not_completed", f"the job is {job['status']}, not completed")
    key = job.get(DOWNLOADS[kind])
    if not key:
        raise AppError(404, "not_found", f"this job has no {kind} picture")
    try:
        data = await storage.call(services.storage.get, key)
    except NotFound:
        raise AppError(404, "not_found", f"the {kind} picture is no longer stored") from None
    return Response(data, media_type="image/jpeg", headers={
        "Content-Disposition": f'attachment; filename="{attachment_name(job, kind)}"',
        "Cache-Control": "private, max-age=300"})
