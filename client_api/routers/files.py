"""Downloads for the local-folder store, reached only through signed expiring links."""
from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from .. import storage
from ..deps import ServicesDep
from ..errors import AppError
from ..storage import KEY_RE, LocalStorage, NotFound

router = APIRouter(tags=["files"], include_in_schema=False)


@router.get("/files/{key:path}")
async def download(key: str, services: ServicesDep, exp: int = Query(0), sig: str = Query("", max_length=128)):
    store = services.storage
    if not isinstance(store, LocalStorage) or not KEY_RE.match(key):
        raise AppError(404, "not_found", "file not found")
    if not store.verify(key, exp, sig):
        raise AppError(403, "link_expired", "this link is invalid or has expired; ask for the job again")
    try:
        data = await storage.call(store.get, key)
    except NotFound:
        raise AppError(404, "not_found", "file not found") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
