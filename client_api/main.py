"""The FastAPI application: create_app(settings) wires routers, errors, metrics and CORS."""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from redis.exceptions import RedisError

from . import errors, metrics
from .config import Settings
from .events_hub import EventHub
from .ratelimit import RateLimiter
from .routers import admin, events, files, health, jobs, legacy, my_jobs, studio, styles
from .services import Services

log = logging.getLogger("restyle.api")


def triton_ready_check(settings: Settings):
    def check() -> bool:
        from restyle.client import TritonRestyleClient

        return TritonRestyleClient(settings.triton_grpc_url).ready(timeout_s=2)

    return check


def startup_warnings(settings: Settings) -> None:
    if settings.anonymous:
        log.warning("no API keys configured (RESTYLE_API_KEYS): serving anonymously, for local use only")
    if settings.storage == "local" and not settings.signing_secret:
        log.warning("RESTYLE_SIGNING_SECRET unset: download links are signed with a random per-process "
                    "key and stop working after a restart or on another API process")


class RefuseHugeBodies:
    """Refuse by Content-Length before the multipart parser spools hundreds of MB to disk."""

    def __init__(self, app, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.limit = max_upload_bytes + 1024 * 1024  # multipart overhead on top of the file

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
            if length.isdigit() and int(length) > self.limit:
                response = errors._json(413, "file_too_large", f"the file is larger than {self.max_upload_bytes} bytes")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = services or Services.create(settings)
        app.state.services = svc
        app.state.limiter = RateLimiter(svc.redis, settings.rate_limit_per_minute, settings.rate_limit_burst)
        app.state.events = EventHub(settings.redis_url, svc.store, settings.redis_timeout_s,
                                      settings.events_keepalive_s)
        try:
            await app.state.events.start()  # else the first watcher connects it
        except RedisError:
            log.warning("Redis unreachable at startup; live events will connect when first asked for")
        app.state.triton_ready = triton_ready_check(settings)
        startup_warnings(settings)
        # What startup made (~100k objects: FastAPI, pydantic, numpy, ...) lives as long as the
        # process; left to the collector, every full collection walks it and stalls each request
        # in flight by ~90 ms on a 2-core VM (seen at the submit p99). Frozen, they are skipped.
        gc.freeze()
        yield
        gc.unfreeze()  # a process that makes apps one after another (tests) frees them again
        await app.state.events.close()  # open streams end with their "unavailable" event
        await svc.close()

    # Swagger UI and ReDoc from files shipped in a package: no CDN, so /docs works offline.
    app = FastAPIOffline(title="Room restyle", version="1.0", static_url="/static/docs",
                         description="Upload a room photo and a style; follow the job; download the restyled room.",
                         lifespan=lifespan)
    errors.install(app)
    for r in (my_jobs.router, jobs.router, events.router, legacy.router, styles.router, health.router, admin.router,
              files.router, studio.router):
        app.include_router(r)
    app.mount("/studio", StaticFiles(directory=studio.STUDIO_DIR), name="studio")  # the page's CSS and modules

    app.add_middleware(RefuseHugeBodies, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(metrics.RequestMetrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"])
    return app
