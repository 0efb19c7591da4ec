"""Response bodies (they are the OpenAPI documentation of the service)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["queued", "analyzing", "generating", "completed", "failed", "canceled"]


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. file_too_large")
    detail: Any = Field(description="what is wrong and what to do about it")


def error_responses(*codes: int) -> dict:
    """`responses=` for a route's error statuses: every one answers an ErrorBody."""
    return {code: {"model": ErrorBody} for code in codes}


class JobCreated(BaseModel):
    job_id: str
    status: Status
    status_url: str
    events_url: str
    websocket_url: str
    estimated_time: float = Field(description="seconds until the result is expected")


class Detection(BaseModel):
    box: list[float]
    score: float
    class_name: str
    furniture: bool


class ResultMetadata(BaseModel):
    room_type: str | None = None
    room_confidence: float | None = None
    detections: list[Detection] = []
    quality_score: float | None = None
    quality_flags: list[str] = []
    timings: dict[str, float] = {}
    seed: int | None = None
    evals: int | None = None  # denoiser evaluations the image cost (UNet and each ControlNet, times batch)
    processing_time: float | None = None


class JobResult(BaseModel):
    transformed_url: str
    thumbnail_url: str
    original_url: str | None
    depth_map_url: str | None = Field(None, description="the depth map the pipeline made (near = white)")
    edge_map_url: str | None = Field(None, description="the edge map the pipeline made")
    download_url: str = Field(description="the result as an attachment named <style>-<job id>.jpg")
    metadata: ResultMetadata


class JobView(BaseModel):
    job_id: str
    status: Status
    progress: float = Field(ge=0, le=1)
    stage: str | None = None
    message: str | None = None
    waiting_for: Literal["triton", "storage"] | None = Field(
        None, description="set while the job waits out an outage of the model server or storage; "
                          "`stage` is where it resumes")
    style: str
    queue_position: int | None = Field(None, description="while queued, on GET /v1/jobs/{id}: 1 = next to start "
                                       "(null when further back than 100 or not queued)")
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: JobResult | None = None
    error: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"] = Field(
        description="degraded: only the model server is down; jobs are still accepted and wait in the queue")
    checks: dict[str, bool] = Field(description="redis, storage, triton: reachable or not")
    missing: list[Literal["redis", "storage", "triton"]] = Field(description="the dependencies that are down")


class StyleInfo(BaseModel):
    name: str
    description: str
    palette: list[str] = Field(description="the style's colours as #rrggbb swatches")


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="the caller's jobs, newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class StepLimits(BaseModel):
    min: int
    max: int
    default: dict[str, int] = Field(description="the step count each speed mode uses when none is given")


class Limits(BaseModel):
    api_key_required: bool
    max_upload_bytes: int
    max_pixels: int
    min_side: int = Field(description="both sides of a photo must be at least this many pixels")
    accepted_types: list[str] = Field(description="MIME types of the photos accepted")
    steps: StepLimits
    max_seed: int
    max_prompt_chars: int
    speeds: list[str]
    modes: list[str]
    room_types: list[str]


class Stats(BaseModel):
    total: int
    completed: int
    failed: int
    canceled: int
    average_processing_time_s: float | None
    failures_by_reason: dict[str, int]
    queue: dict[str, int]


def ts(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), timezone.utc) if value else None
