"""The FastAPI application: create_app(settings) wires routers, errors, metrics and CORS."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from . import errors, metrics
from .config import Settings
from .ratelimit import RateLimiter
from .routers import admin, events, files, health, jobs, legacy, styles
from .services import Services

log = logging.getLogger("restyle.api")


def triton_ready_check(settings: Settings):
    def check() -> bool:
        from restyle.client import TritonRestyleClient

        return TritonRestyleClient(settings.triton_grpc_url, timeout_s=3).ready()

    return check


def startup_warnings(settings: Settings) -> None:
    if settings.anonymous:
        log.warning("no API keys configured (RESTYLE_API_KEYS): serving anonymously, for local use only")
    if settings.storage == "local" and not settings.signing_secret:
        log.warning("RESTYLE_SIGNING_SECRET unset: download links are signed with a random per-process "
                    "key and stop working after a restart or on another API process")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = services or Services.create(settings)
        app.state.services = svc
        app.state.limiter = RateLimiter(svc.redis, settings.rate_limit_per_minute, settings.rate_limit_burst)
        app.state.triton_ready = triton_ready_check(settings)
        startup_warnings(settings)
        yield
        await svc.close()

    app = FastAPI(title="Room restyle", version="1.0",
                  description="Upload a room photo and a style; follow the job; download the restyled room.",
                  lifespan=lifespan)
    errors.install(app)
    for r in (jobs.router, events.router, legacy.router, styles.router, health.router, admin.router,
              files.router):
        app.include_router(r)

    limit = settings.max_upload_bytes + 1024 * 1024  # multipart overhead on top of the file

    @app.middleware("http")
    async def refuse_huge_bodies(request: Request, call_next):
        # Refuse by Content-Length before the multipart parser spools hundreds of MB to disk.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return errors._json(413, "file_too_large", f"the file is larger than {settings.max_upload_bytes} bytes")
        return await call_next(request)

    app.middleware("http")(metrics.middleware)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
    return app
