"""One JSON error shape for everything: {"error": code, "detail": message}.

Infrastructure failures (Redis, storage) become 503 with Retry-After rather than 500, so
clients know to retry; nothing a client sends can produce a 5xx.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .storage import StorageError

log = logging.getLogger("restyle.api")


class AppError(Exception):
    def __init__(self, status: int, code: str, detail, headers: dict | None = None):
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def not_found(what: str = "job") -> AppError:
    return AppError(404, "not_found", f"{what} not found")


def _json(status, code, detail, headers=None):
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited"}


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app(_: Request, e: AppError):
        return _json(e.status, e.code, e.detail, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError):
        errors = [{"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
                  for err in e.errors()]
        return _json(422, "validation_error", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException):
        return _json(e.status_code, _HTTP_CODES.get(e.status_code, "error"), e.detail,
                     getattr(e, "headers", None))

    # Unreachable, or answering but refusing (OOM under maxmemory, a read-only replica, an
    # ACL): either way this request cannot be served, and a retry may succeed later.
    @app.exception_handler(RedisError)
    async def _redis(_: Request, e: RedisError):
        unreachable = isinstance(e, (RedisConnectionError, RedisTimeoutError))
        log.error("redis %s: %s", "unreachable" if unreachable else "refused a command", type(e).__name__)
        detail = "is unreachable" if unreachable else "refused the request"
        return _json(503, "store_unavailable", f"the job store (Redis) {detail}; retry later", {"Retry-After": "5"})

    @app.exception_handler(StorageError)
    async def _storage(_: Request, e: StorageError):
        log.error("storage error: %s", e)
        return _json(503, "storage_unavailable", "object storage is unreachable; retry later",
                     {"Retry-After": "5"})
