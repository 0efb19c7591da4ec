"""Paths the existing mobile app calls: the same handlers as /v1 (documented under "legacy")."""
from __future__ import annotations

from fastapi import APIRouter

from ..schemas import JobCreated, JobView
from . import jobs

router = APIRouter(tags=["legacy"])
router.add_api_route("/transform/submit", jobs.submit, methods=["POST"], status_code=202,
                     response_model=JobCreated, responses=jobs.SUBMIT_ERRORS)
router.add_api_route("/transform/status/{job_id}", jobs.get_job, methods=["GET"], response_model=JobView,
                     responses=jobs.JOB_ERRORS)
router.add_api_route("/transform/{job_id}", jobs.cancel_job, methods=["DELETE"], response_model=JobView,
                     responses=jobs.CANCEL_ERRORS)
