"""What both the API and the worker hold: settings, Redis, the job store, queue and storage.

Also the two things both of them do with a job: render it for a client (signed URLs),
and notify its webhook after finalising it.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from . import webhooks
from .config import Settings
from .jobs_store import TERMINAL, JobStore
from .queue import JobQueue
from .schemas import JobResult, JobView, ResultMetadata, ts
from .storage import Storage, make_storage

log = logging.getLogger("restyle.service")


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    store: JobStore
    queue: JobQueue
    storage: Storage
    _background: set = field(default_factory=set)

    @classmethod
    def create(cls, settings: Settings, storage: Storage | None = None) -> "Services":
        command_timeout = max(settings.redis_timeout_s, 30.0)
        # A burst of requests beyond the pool waits its turn (as long as a slow command may take)
        # rather than failing: one connection per request in flight would exhaust Redis's maxclients.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections, timeout=command_timeout,
            decode_responses=True, socket_connect_timeout=settings.redis_timeout_s, socket_timeout=command_timeout,
            health_check_interval=30)
        r = aioredis.Redis.from_pool(pool)  # closed with the client
        return cls(settings, r, JobStore(r, settings.job_ttl),
                   JobQueue(r, settings.queue_stream, settings.queue_group),
                   storage or make_storage(settings))

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self.settings.webhook_timeout_s)
        await self.redis.aclose()

    def view(self, job_id: str, job: dict, base_url: str | None = None) -> JobView:
        base = base_url or self.settings.public_base_url or job.get("base_url") or "http://localhost:8000"
        ttl = self.settings.signed_url_ttl_s

        def link(key: str | None) -> str | None:
            return self.storage.url(key, base_url=base, expires_s=ttl) if key else None

        result = None
        if job.get("status") == "completed" and job.get("result_key"):
            result = JobResult(
                transformed_url=link(job["result_key"]),
                thumbnail_url=link(job.get("thumbnail_key")),
                original_url=link(job.get("original_key")),
                depth_map_url=link(job.get("depth_key")), edge_map_url=link(job.get("edge_key")),
                download_url=f"{base.rstrip('/')}/v1/jobs/{job_id}/download",
                metadata=ResultMetadata(**json.loads(job.get("metadata") or "{}")),
            )
        return JobView(
            job_id=job_id, status=job.get("status", "queued"), progress=float(job.get("progress") or 0),
            stage=job.get("stage") or None, message=job.get("message") or None, style=job.get("style", ""),
            waiting_for=(job.get("waiting_for") or None) if job.get("status") not in TERMINAL else None,
            created_at=ts(job.get("created_at")), started_at=ts(job.get("started_at")),
            completed_at=ts(job.get("completed_at")), result=result, error=job.get("error") or None,
        )

    def notify(self, job_id: str) -> None:
        """Fire the job's webhook in the background (after it was finalised by this caller)."""
        if not self.settings.webhook_secret:
            return
        task = asyncio.create_task(self._notify(job_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self, job_id: str) -> None:
        try:
            job = await self.store.get(job_id)
            if not job or not job.get("webhook_url"):
                return
            payload = self.view(job_id, job).model_dump(mode="json")
            s = self.settings
            await webhooks.deliver(job["webhook_url"], payload, secret=s.webhook_secret.get_secret_value(),
                                   max_attempts=s.webhook_max_attempts, backoff_s=s.webhook_backoff_s,
                                   backoff_max_s=s.webhook_backoff_max_s, timeout_s=s.webhook_timeout_s,
                                   allow_private=s.webhook_allow_private)
        except Exception:  # a webhook must never take the worker or the API down
            log.exception("webhook for job %s failed", job_id)
