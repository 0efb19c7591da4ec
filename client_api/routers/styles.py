from __future__ import annotations

from fastapi import APIRouter

from restyle.styles import PALETTES, STYLES

from ..schemas import StyleInfo

router = APIRouter(tags=["styles"])


@router.get("/v1/styles", response_model=list[StyleInfo], summary="Available styles")
async def list_styles() -> list[StyleInfo]:
    return [StyleInfo(name=s.name, description=s.description, palette=list(PALETTES[s.name]))
            for s in STYLES.values()]
