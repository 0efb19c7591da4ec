"""The worker: take a job from the stream, run it through room_restyle, store, finalise, ack.

Delivery is at-least-once (see queue.py); finalisation is exactly-once (see jobs_store.py).
The pipeline is any callable with TritonRestyleClient.restyle's signature, run in a thread
because the Triton client blocks; its progress callbacks cross back to the event loop.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from restyle.contract import FIELDS
from restyle.imaging import ImageError
from restyle.styles import display_name

from . import metrics, uploads
from .jobs_store import TERMINAL, completion_stats, failure_stats, now
from .queue import Delivery
from .services import Services
from .storage import NotFound, job_prefixes, result_key, thumbnail_key

log = logging.getLogger("restyle.worker")

# pipeline stage -> (job status, user message)
STAGES = {
    "preprocess": ("analyzing", "Preparing image..."),
    "detection": ("analyzing", "Detecting furniture..."),
    "segmentation": ("analyzing", "Creating masks..."),
    "room_classification": ("analyzing", "Analyzing room..."),
    "depth": ("analyzing", "Generating depth map..."),
    "edges": ("analyzing", "Detecting edges..."),
    "diffusion": ("generating", "Applying {style} style..."),
    "quality": ("generating", "Validating quality..."),
    "postprocess": ("generating", "Finishing image..."),
}
# the pipeline's 0..1 is shown as 5%..95%; before is pickup, after is saving the result
SPAN = (0.05, 0.95)
CANCEL_POLL_S = 0.3

Pipeline = Callable[..., object]  # (RestyleRequest, on_progress, cancel) -> RestyleResult


def load_pipeline(settings) -> Pipeline:
    if settings.worker_pipeline == "triton":
        def triton(req, on_progress=None, cancel=None):
            from restyle.client import TritonRestyleClient

            # a client per job: a fresh channel after a Triton restart, no shared stream state
            return TritonRestyleClient(settings.triton_grpc_url, timeout_s=settings.triton_timeout_s).restyle(
                req, on_progress=on_progress, cancel=cancel)
        return triton
    module, _, attr = settings.worker_pipeline.partition(":")
    return getattr(importlib.import_module(module), attr)


def progress_update(p, style: str) -> dict:
    status, message = STAGES.get(p.stage, ("generating", "Working..."))
    lo, hi = SPAN
    return {"status": status, "stage": p.stage, "message": message.format(style=display_name(style)),
            "progress": round(lo + (hi - lo) * min(1.0, max(0.0, float(p.progress))), 4),
            "step": p.step, "total_steps": p.total_steps}


class Worker:
    def __init__(self, services: Services, pipeline: Pipeline | None = None, name: str | None = None):
        self.svc = services
        self.s = services.settings
        self.pipeline = pipeline or load_pipeline(self.s)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"

    async def run(self, stop: asyncio.Event) -> None:
        await self.svc.queue.ensure_group()
        port = self.s.worker_metrics_port
        server = metrics.serve_worker_metrics(port) if port else None
        log.info("worker %s started (%d consumer(s)%s)", self.name, self.s.worker_concurrency,
                 f", metrics on :{port}/metrics" if port else "")
        try:
            await asyncio.gather(*(self._loop(f"{self.name}-{i}", stop) for i in range(self.s.worker_concurrency)))
        finally:
            if server is not None:
                await asyncio.to_thread(server.shutdown)  # waits up to one poll interval (0.5 s)
                server.server_close()

    async def _loop(self, consumer: str, stop: asyncio.Event) -> None:
        idle_ms = int(self.s.visibility_timeout_s * 1000)
        while not stop.is_set():
            try:
                d = await self.svc.queue.next(consumer, idle_ms, block_ms=1000)
                if d:
                    await self.handle(consumer, d)
            except RedisError as e:  # Redis restarting: wait, then carry on; pending entries survive
                log.warning("redis error in %s: %s", consumer, type(e).__name__)
                await asyncio.sleep(1)
            except Exception:  # e.g. storage down: the entry stays pending and is delivered again later
                log.exception("job handling failed in %s; it will be retried", consumer)
                await asyncio.sleep(1)

    async def handle(self, consumer: str, d: Delivery) -> None:
        beat = asyncio.create_task(self._heartbeat(consumer, d.entry_id))
        try:
            with metrics.WORKER_IN_FLIGHT.track_inprogress():
                await self.process(d)
        finally:
            beat.cancel()
        await self.svc.queue.ack(d.entry_id)  # only now: the job is finalised (or was already)

    async def _heartbeat(self, consumer: str, entry_id: str) -> None:
        every = max(0.2, self.s.visibility_timeout_s / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await self.svc.queue.heartbeat(consumer, entry_id)
            except RedisError:
                pass

    async def fail(self, job_id: str, reason: str, message: str) -> None:
        log.warning("job %s failed (%s): %s", job_id, reason, message)
        stats = failure_stats(reason)
        if await self.svc.store.finish(job_id, "failed", {"error": message, "error_reason": reason,
                                                         "stage": "failed", "message": "Failed"}, stats):
            metrics.job_finished("failed", stats)
            self.svc.notify(job_id)

    async def process(self, d: Delivery) -> None:
        store, job_id = self.svc.store, d.job_id
        job = await store.get(job_id)
        if not job or job.get("status") in TERMINAL:
            return  # canceled while queued, deleted, or finished by an earlier delivery
        if d.deliveries > self.s.max_deliveries:
            return await self.fail(job_id, "max_deliveries",
                                   f"the job was started {d.deliveries - 1} times without finishing "
                                   "(workers crashed or timed out); giving up")
        t0 = time.time()
        if not await store.update(job_id, {"status": "analyzing", "stage": "preprocess", "started_at": now(),
                                           "message": "Starting...", "progress": 0.02}, new_delivery=True):
            return
        params = json.loads(job["params"])
        try:
            image = await asyncio.to_thread(self.svc.storage.get, job["original_key"])
        except NotFound:
            return await self.fail(job_id, "missing_upload", "the uploaded photo is gone (expired or deleted)")
        try:  # the API read only the upload's header: it is decoded (and oriented, downsized) here
            image = await asyncio.to_thread(uploads.working_copy, image, max_side=self.s.working_max_side)
        except ImageError as e:
            return await self.fail(job_id, "rejected", str(e))
        cancel = threading.Event()
        watcher = asyncio.create_task(self._watch(job_id, cancel))
        try:
            result = await self._run_pipeline(job_id, image, params, cancel)
        finally:
            watcher.cancel()
        if result is None or cancel.is_set():
            return await self._stopped(job_id)
        await store.update(job_id, {"status": "generating", "stage": "saving", "message": "Saving result...",
                                    "progress": 0.96})
        thumb = await asyncio.to_thread(uploads.thumbnail, result.image_jpeg)
        await asyncio.to_thread(self.svc.storage.put, result_key(job_id), result.image_jpeg)
        await asyncio.to_thread(self.svc.storage.put, thumbnail_key(job_id), thumb)
        elapsed = round(time.time() - t0, 3)
        metadata = {"room_type": result.room_type, "room_confidence": result.room_confidence,
                    "detections": result.detections, "quality_score": result.quality_score,
                    "quality_flags": list(result.quality_flags), "timings": dict(result.timings),
                    "seed": result.seed, "evals": result.evals, "processing_time": elapsed}
        fields = {"result_key": result_key(job_id), "thumbnail_key": thumbnail_key(job_id),
                  "quality_score": result.quality_score, "processing_time": elapsed,
                  "metadata": json.dumps(metadata, default=float), "stage": "completed", "message": "Done!"}
        stats = completion_stats(elapsed, result.timings)
        if await store.finish(job_id, "completed", fields, stats):
            metrics.job_finished("completed", stats)
            self.svc.notify(job_id)
        else:
            await self._stopped(job_id)

    async def _stopped(self, job_id: str) -> None:
        """We did not finalise the job. If it was canceled or deleted meanwhile, count that and drop
        what we wrote; otherwise fail() counted it (or another delivery finished it)."""
        if (await self.svc.store.get(job_id) or {}).get("status", "canceled") != "canceled":
            return
        metrics.job_finished("canceled")
        for prefix in job_prefixes(job_id)[1:]:  # results/ (the upload is the API's to delete)
            await asyncio.to_thread(self.svc.storage.delete_prefix, prefix)

    async def _watch(self, job_id: str, cancel: threading.Event) -> None:
        """Cancel the pipeline once the job is canceled or deleted through the API."""
        while not cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_S)
            try:
                status = await self.svc.store.status(job_id)
            except RedisError:
                continue
            if status is None or status in TERMINAL:
                cancel.set()

    async def _run_pipeline(self, job_id: str, image: bytes, params: dict, cancel: threading.Event):
        from restyle.client import Cancelled, RestyleRequest, TritonRequestError, TritonUnavailable

        # params were checked against the contract at submit
        req = RestyleRequest(image=image, **{k: v for k, v in params.items() if k in FIELDS})
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue = asyncio.Queue()
        pump = asyncio.create_task(self._pump(job_id, updates))

        def on_progress(p) -> None:  # called on the pipeline's thread
            loop.call_soon_threadsafe(updates.put_nowait, progress_update(p, params["style"]))

        try:
            for attempt in range(1, self.s.triton_max_attempts + 1):
                try:
                    return await asyncio.to_thread(self.pipeline, req, on_progress, cancel)
                except TritonUnavailable as e:
                    if attempt == self.s.triton_max_attempts:
                        await self.fail(job_id, "triton_unavailable",
                                        f"the model server was unreachable after {attempt} attempts: {e}")
                        return None
                    metrics.WORKER_TRITON_RETRIES.inc()
                    delay = min(self.s.triton_backoff_max_s, self.s.triton_backoff_s * 2 ** (attempt - 1))
                    updates.put_nowait({"message": f"Waiting for the model server (retry {attempt})..."})
                    if await asyncio.to_thread(cancel.wait, delay):
                        return None
        except Cancelled:
            return None
        except TritonRequestError as e:
            await self.fail(job_id, "rejected", str(e))
        except Exception as e:
            if cancel.is_set():
                return None
            log.exception("job %s: pipeline error", job_id)
            await self.fail(job_id, "internal", f"processing failed ({type(e).__name__}); try again")
        finally:
            pump.cancel()
        return None

    async def _pump(self, job_id: str, updates: asyncio.Queue) -> None:
        """Write progress to Redis; when updates arrive faster than Redis takes them, keep the latest."""
        while True:
            item = await updates.get()
            while not updates.empty():
                newer = updates.get_nowait()
                if newer.get("stage") not in (None, item.get("stage")):
                    await self._write(job_id, item)  # don't skip a stage's first message
                item = newer
            await self._write(job_id, item)

    async def _write(self, job_id: str, fields: dict) -> None:
        try:
            await self.svc.store.update(job_id, fields)
        except RedisError:
            pass  # progress is best effort; the final state is what matters
