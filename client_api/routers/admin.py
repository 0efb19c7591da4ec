from __future__ import annotations

from fastapi import APIRouter, Depends

from ..deps import ServicesDep, require_admin
from ..jobs_store import summarize
from ..schemas import Stats, error_responses

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=error_responses(401, 403, 503))


@router.get("/stats", response_model=Stats, summary="Job totals, average processing time, queue")
async def stats(services: ServicesDep) -> Stats:
    return Stats(**summarize(await services.store.stats()), queue=await services.queue.depth())


@router.get("/queue", summary="Queue state: waiting, pending (in progress), consumers")
async def queue(services: ServicesDep) -> dict:
    return await services.queue.depth()
