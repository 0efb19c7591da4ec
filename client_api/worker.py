"""The worker: take a job from the stream, run it through room_restyle, store, finalise, ack.

Delivery is at-least-once (see queue.py); finalisation is exactly-once (see jobs_store.py).
The pipeline is any callable with TritonRestyleClient.restyle's signature, run in a thread
because the Triton client blocks; its progress callbacks cross back to the event loop.

Outages (outages.py) are not the job's fault: while Triton or storage is unreachable a worker
takes no new job, and a job in hand waits (its record says for what and where it resumes) until
the dependency is back or RESTYLE_OUTAGE_DEADLINE_S has passed. A job in flight each time Triton
went down RESTYLE_MAX_MODEL_SERVER_LOSSES times is taken for the cause (a poison job) and fails.
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
from dataclasses import dataclass

from redis.exceptions import RedisError

from restyle.contract import FIELDS
from restyle.imaging import ImageError
from restyle.styles import display_name

from . import metrics, storage, uploads
from .jobs_store import TERMINAL, completion_stats, failure_stats, job_key, now
from .outages import LABELS, REDIS, STORAGE, TRITON, Dependency, Outages
from .queue import Delivery
from .services import Services
from .storage import NotFound, StorageError, job_prefixes, map_key, result_key, thumbnail_key

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
STORAGE_ERRORS = (StorageError, OSError)  # S3/R2 unreachable or the local disk failing (NotFound is caught first)

Pipeline = Callable[..., object]  # (RestyleRequest, on_progress, cancel) -> RestyleResult


def load_pipeline(settings) -> Pipeline:
    if settings.worker_pipeline == "triton":
        def triton(req, on_progress=None, cancel=None):
            from restyle.client import TritonRestyleClient

            # a client per job: a fresh channel after a Triton restart, no shared stream state
            return TritonRestyleClient(settings.triton_grpc_url, timeout_s=settings.triton_timeout_s).restyle(
                req, on_progress=on_progress, cancel=cancel)

        def ready() -> bool:
            from restyle.client import TritonRestyleClient

            return TritonRestyleClient(settings.triton_grpc_url).ready()
        triton.ready = ready  # the worker probes this before taking work and while waiting out an outage
        return triton
    module, _, attr = settings.worker_pipeline.partition(":")
    return getattr(importlib.import_module(module), attr)


def progress_update(p, style: str) -> dict:
    status, message = STAGES.get(p.stage, ("generating", "Working..."))
    lo, hi = SPAN
    return {"status": status, "stage": p.stage, "message": message.format(style=display_name(style)),
            "progress": round(lo + (hi - lo) * min(1.0, max(0.0, float(p.progress))), 4),
            "step": p.step, "total_steps": p.total_steps}


class WaitedTooLong(Exception):
    """A dependency stayed down past the job's outage deadline."""

    def __init__(self, dependency: str):
        self.dependency = dependency


class GiveBack(Exception):
    """The worker stops while the job waits: leave its entry pending for another worker."""


class Canceled(Exception):
    """The job was canceled or deleted while it waited."""


@dataclass
class Held:
    """A job in this worker's hands."""
    job_id: str
    created_at: float
    cancel: threading.Event
    outage_counted: bool = False  # this delivery has been marked as interrupted by an outage


def _probe(fn: Callable[[], object]):
    async def probe() -> bool:
        try:
            return bool(await asyncio.to_thread(fn))
        except Exception:
            return False
    return probe


class Worker:
    def __init__(self, services: Services, pipeline: Pipeline | None = None, name: str | None = None):
        self.svc = services
        self.s = services.settings
        self.pipeline = pipeline or load_pipeline(self.s)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.stop = asyncio.Event()
        # a pipeline without a ready() probe (tests' own) is taken as always ready
        deps = [Dependency(TRITON, _probe(getattr(self.pipeline, "ready", lambda: True))),
                Dependency(STORAGE, _probe(services.storage.ready)),
                Dependency(REDIS, self._redis_ready)]
        s = self.s
        self.outages = Outages({d.name: d for d in deps}, backoff_s=s.outage_backoff_s,
                               backoff_max_s=s.outage_backoff_max_s, deadline_s=s.outage_deadline_s,
                               redis=services.redis)

    async def _redis_ready(self) -> bool:
        try:
            return bool(await self.svc.redis.ping())
        except Exception:
            return False

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
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
                await self.outages.gate(stop)  # take no job while Triton or storage is down
                if stop.is_set():
                    break
                d = await self.svc.queue.next(consumer, idle_ms, block_ms=1000)
                if d:
                    await self.handle(consumer, d)
            except RedisError as e:  # Redis restarting: wait for it; pending entries survive
                await self.outages.lost(REDIS, type(e).__name__)
                await self.outages.wait(REDIS, stop=stop.is_set)
            except Exception:  # a bug: the entry stays pending and is delivered again later
                log.exception("job handling failed in %s; it will be retried", consumer)
                await asyncio.sleep(1)

    async def handle(self, consumer: str, d: Delivery) -> None:
        beat = asyncio.create_task(self._heartbeat(consumer, d.entry_id))
        try:
            with metrics.WORKER_IN_FLIGHT.track_inprogress():
                await self.process(d)
        except GiveBack:
            log.info("job %s left pending for another worker (this one is stopping)", d.job_id)
            return
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
        if await self._until_redis(lambda: self.svc.store.finish(
                job_id, "failed", {"error": message, "error_reason": reason, "stage": "failed", "message": "Failed",
                                   "waiting_for": ""}, stats)):
            metrics.job_finished("failed", stats)
            self.svc.notify(job_id)

    async def process(self, d: Delivery) -> None:
        store, job_id = self.svc.store, d.job_id
        job = await store.get(job_id)
        if not job or job.get("status") in TERMINAL:
            return  # canceled while queued, deleted, or finished by an earlier delivery
        # deliveries cut short by an outage (the worker died while the job waited) are not the job's
        crashes = d.deliveries - int(job.get("outage_deliveries") or 0)
        if crashes > self.s.max_deliveries:
            return await self.fail(job_id, "max_deliveries",
                                   f"the job was started {crashes - 1} times without finishing "
                                   "(workers crashed or timed out); giving up")
        t0 = time.time()
        if not await store.update(job_id, {"status": "analyzing", "stage": "preprocess", "started_at": now(),
                                           "message": "Starting...", "progress": 0.02}, new_delivery=True):
            return
        held = Held(job_id, float(job.get("created_at") or t0), threading.Event())
        watcher = asyncio.create_task(self._watch(job_id, held.cancel))
        try:
            await self._process(held, job, t0)
        except WaitedTooLong as e:
            await self.fail(job_id, f"{e.dependency}_unavailable",
                            f"{LABELS[e.dependency]} was unreachable for longer than {self.s.outage_deadline_s:g} s "
                            "(RESTYLE_OUTAGE_DEADLINE_S); submit the job again later")
        except Canceled:
            await self._stopped(job_id)
        finally:
            watcher.cancel()

    async def _process(self, held: Held, job: dict, t0: float) -> None:
        store, job_id = self.svc.store, held.job_id
        params = json.loads(job["params"])
        try:
            image = await self._with_storage(held, "preprocess", self.svc.storage.get, job["original_key"])
        except NotFound:
            return await self.fail(job_id, "missing_upload", "the uploaded photo is gone (expired or deleted)")
        try:  # the API read only the upload's header: it is decoded (and oriented, downsized) here
            image = await asyncio.to_thread(uploads.working_copy, image, max_side=self.s.working_max_side)
        except ImageError as e:
            return await self.fail(job_id, "rejected", str(e))
        result = await self._run_pipeline(held, image, params)
        if result is None or held.cancel.is_set():
            return await self._stopped(job_id)
        await store.update(job_id, {"status": "generating", "stage": "saving", "message": "Saving result...",
                                    "progress": 0.96})
        thumb = await asyncio.to_thread(uploads.thumbnail, result.image_jpeg)
        await self._with_storage(held, "saving", self.svc.storage.put, result_key(job_id), result.image_jpeg)
        await self._with_storage(held, "saving", self.svc.storage.put, thumbnail_key(job_id), thumb)
        maps = {}  # the depth and edge maps the pipeline made, shown beside the result
        for field, kind, gray in (("depth_key", "depth", result.depth_map), ("edge_key", "edges", result.edge_map)):
            if gray is not None:
                jpeg = await asyncio.to_thread(uploads.map_jpeg, gray)
                await self._with_storage(held, "saving", self.svc.storage.put, map_key(job_id, kind), jpeg)
                maps[field] = map_key(job_id, kind)
        elapsed = round(time.time() - t0, 3)
        metadata = {"room_type": result.room_type, "room_confidence": result.room_confidence,
                    "detections": result.detections, "quality_score": result.quality_score,
                    "quality_flags": list(result.quality_flags), "timings": dict(result.timings),
                    "seed": result.seed, "evals": result.evals, "processing_time": elapsed}
        fields = {"result_key": result_key(job_id), "thumbnail_key": thumbnail_key(job_id),
                  "quality_score": result.quality_score, "processing_time": elapsed,
                  "metadata": json.dumps(metadata, default=float), "stage": "completed", "message": "Done!", **maps}
        stats = completion_stats(elapsed, result.timings)
        if await self._until_redis(lambda: store.finish(job_id, "completed", fields, stats)):
            metrics.job_finished("completed", stats)
            self.svc.notify(job_id)
        else:
            await self._stopped(job_id)

    async def _until_redis(self, write):
        """Finalise even across a Redis restart rather than leave the entry to be redelivered and the
        made result redone (the script finalises once: a retry after a lost reply finds the job final)."""
        while True:
            try:
                return await write()
            except RedisError as e:
                await self.outages.lost(REDIS, type(e).__name__)
                if not await self.outages.wait(REDIS, stop=self.stop.is_set):
                    raise GiveBack() from e

    async def _with_storage(self, held: Held, stage: str, fn, *args):
        """fn(*args) on the store; while the store is unreachable, wait for it and try again."""
        while True:
            if self.outages[STORAGE].down:
                await self._wait_for(held, STORAGE, stage)
            try:
                return await storage.call(fn, *args)
            except NotFound:
                raise
            except STORAGE_ERRORS as e:
                await self.outages.lost(STORAGE, e)

    async def _wait_for(self, held: Held, dependency: str, stage: str) -> None:
        """Hold the job until `dependency` is back; its record says what it waits for and where it resumes.
        Raises WaitedTooLong past the job's deadline, Canceled, or GiveBack when the worker stops."""
        job_id, label = held.job_id, LABELS[dependency]
        if not held.outage_counted:  # if this worker dies while waiting, the redelivery is not the job's fault
            held.outage_counted = True
            await self._best_effort(self.svc.redis.hincrby(job_key(job_id), "outage_deliveries", 1))
        until = self.outages.deadline(dependency, held.created_at)
        log.info("job %s waiting for %s (resumes at %s; fails in %.0f s if it stays down)", job_id, label, stage,
                 until - time.time())
        await self._write(job_id, {"waiting_for": dependency, "stage": stage,
                                   "message": f"Waiting for {label}; the job resumes at {stage} once it is back"})
        t0 = time.time()
        with metrics.WORKER_JOBS_WAITING.labels(dependency).track_inprogress():
            back = await self.outages.wait(dependency, until,
                                           stop=lambda: held.cancel.is_set() or self.stop.is_set())
        if held.cancel.is_set():
            raise Canceled()
        if not back:
            raise GiveBack() if self.stop.is_set() and time.time() < until else WaitedTooLong(dependency)
        log.info("job %s resumed at %s after waiting %.1f s for %s", job_id, stage, time.time() - t0, label)
        await self._write(job_id, {"waiting_for": "", "message": f"Resuming at {stage}..."})

    async def _stopped(self, job_id: str) -> None:
        """We did not finalise the job. If it was canceled or deleted meanwhile, count that and drop
        what we wrote; otherwise fail() counted it (or another delivery finished it)."""
        if (await self.svc.store.get(job_id) or {}).get("status", "canceled") != "canceled":
            return
        metrics.job_finished("canceled")
        for prefix in job_prefixes(job_id)[1:]:  # results/ (the upload is the API's to delete)
            await storage.call(self.svc.storage.delete_prefix, prefix)

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

    async def _run_pipeline(self, held: Held, image: bytes, params: dict):
        from restyle.client import Cancelled, RestyleRequest, TritonRequestError, TritonUnavailable

        job_id, cancel = held.job_id, held.cancel
        # params were checked against the contract at submit
        req = RestyleRequest(image=image, **{k: v for k, v in params.items() if k in FIELDS})
        loop = asyncio.get_running_loop()
        updates: asyncio.Queue = asyncio.Queue()
        pump = asyncio.create_task(self._pump(job_id, updates))

        def on_progress(p) -> None:  # called on the pipeline's thread
            loop.call_soon_threadsafe(updates.put_nowait, progress_update(p, params["style"]))

        try:
            while True:
                if self.outages[TRITON].down:
                    await self._wait_for(held, TRITON, "preprocess")  # a rerun starts from the beginning
                try:
                    return await asyncio.to_thread(self.pipeline, req, on_progress, cancel)
                except TritonUnavailable as e:
                    if cancel.is_set():
                        return None
                    # the server went down with this job on it: an innocent bystander, or the cause
                    losses = await self.svc.redis.hincrby(job_key(job_id), "model_server_losses", 1)
                    await self.outages.lost(TRITON, e)
                    if losses >= self.s.max_model_server_losses:
                        await self.fail(job_id, "crashed_model_server",
                                        f"the model server went down {losses} times while it ran this job, so the "
                                        "job is taken for the cause and not retried (RESTYLE_MAX_MODEL_SERVER_LOSSES)")
                        return None
                    log.warning("job %s: the model server went down while running it (loss %d; it fails at %d)",
                                job_id, losses, self.s.max_model_server_losses)
        except Cancelled:
            return None
        except TritonRequestError as e:
            await self.fail(job_id, "rejected", str(e))
        except (WaitedTooLong, Canceled, GiveBack):
            raise
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
        await self._best_effort(self.svc.store.update(job_id, fields))

    @staticmethod
    async def _best_effort(write) -> None:
        try:
            await write
        except RedisError:
            pass  # progress is best effort; the final state is what matters
