from __future__ import annotations

from fastapi import APIRouter

from restyle.styles import STYLES

from ..schemas import StyleInfo

router = APIRouter(tags=["styles"])


@router.get("/v1/styles", response_model=list[StyleInfo], summary="Available styles")
async def list_styles() -> list[StyleInfo]:
    return [StyleInfo(name=s.name, description=s.description) for s in STYLES.values()]


@router.get("/", summary="Service name and styles (what the mobile app loads first)")
async def root() -> dict:
    return {"service": "room restyle", "docs": "/docs",
            "styles": [s.model_dump() for s in await list_styles()]}
