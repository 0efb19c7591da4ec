"""The studio (the web page at /), the API's index at /v1, and the limits a client checks before uploading."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from restyle.contract import (DEFAULT_STEPS, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, MIN_INPUT_SIDE, MODES,
                              ROOM_TYPES, SPEEDS)

from ..deps import ServicesDep
from ..schemas import Limits, StepLimits
from ..uploads import ACCEPTED_TYPES
from .styles import list_styles

STUDIO_DIR = Path(__file__).resolve().parent.parent / "studio"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def studio() -> FileResponse:
    return FileResponse(STUDIO_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/v1", tags=["styles"], summary="Service name, links and styles (what an app loads first)")
async def index() -> dict:
    return {"service": "room restyle", "docs": "/docs", "studio": "/", "limits": "/v1/limits",
            "styles": [s.model_dump() for s in await list_styles()]}


@router.get("/v1/limits", tags=["styles"], response_model=Limits, summary="What a request may ask for")
async def limits(services: ServicesDep) -> Limits:
    s = services.settings
    return Limits(api_key_required=not s.anonymous, max_upload_bytes=s.max_upload_bytes, max_pixels=s.max_pixels,
                  min_side=MIN_INPUT_SIDE, accepted_types=list(ACCEPTED_TYPES.values()),
                  steps=StepLimits(min=1, max=MAX_STEPS, default=DEFAULT_STEPS), max_seed=MAX_SEED,
                  max_prompt_chars=MAX_PROMPT_CHARS, speeds=list(SPEEDS), modes=list(MODES),
                  room_types=ROOM_TYPES)
