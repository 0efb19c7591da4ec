"""FastAPI dependencies: services, the caller's identity, job lookup with ownership."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import AppError, not_found
from .security import authenticate, is_admin
from .services import Services

_bearer = HTTPBearer(auto_error=False, description="API key")


# Dependencies are `async def` though they never await: FastAPI runs a plain `def` in its
# thread pool, a hop that costs more than the function (several per request).
async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _token(creds: HTTPAuthorizationCredentials | None, api_key: str | None) -> str | None:
    # `api_key` query parameter: browsers cannot set headers on EventSource or WebSocket.
    return creds.credentials if creds else api_key


async def current_owner(services: ServicesDep,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
                        api_key: Annotated[str | None, Query(include_in_schema=False)] = None) -> str:
    owner = authenticate(services.settings, _token(creds, api_key))
    if owner is None:
        raise AppError(401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)",
                       {"WWW-Authenticate": "Bearer"})
    return owner


OwnerDep = Annotated[str, Depends(current_owner)]


async def require_admin(services: ServicesDep,
                        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> None:
    token = _token(creds, None)
    if is_admin(services.settings, token):
        return
    if token is None:  # no credentials at all: say how to authenticate (401), not "forbidden"
        raise AppError(401, "unauthorized", "admin API key required (Authorization: Bearer <admin key>)",
                       {"WWW-Authenticate": "Bearer"})
    raise AppError(403, "forbidden", "this key is not the admin API key")


async def owned_job(job_id: str, owner: OwnerDep, services: ServicesDep) -> dict:
    """The job if it exists and belongs to the caller; another key's job is a plain 404."""
    job = await services.store.get(job_id) if len(job_id) <= 64 else None
    if not job or job.get("owner") != owner:
        raise not_found()
    job["id"] = job_id
    return job


JobDep = Annotated[dict, Depends(owned_job)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
