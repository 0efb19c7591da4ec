"""The stream queue and the job record scripts, against a real redis-server."""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from client_api.jobs_store import JobStore
from client_api.queue import JobQueue
from client_api.ratelimit import RateLimiter


async def _setup(url):
    r = aioredis.from_url(url, decode_responses=True)
    q = JobQueue(r, "s", "g")
    await q.ensure_group()
    await q.ensure_group()  # idempotent
    return r, q


async def test_at_least_once_and_heartbeat(redis_url):
    r, q = await _setup(redis_url)
    pipe = r.pipeline()
    q.enqueue_into(pipe, "job1")
    await pipe.execute()
    assert await q.depth() == {"waiting": 1, "pending": 0, "consumers": 0}
    d = await q.next("w1", min_idle_ms=200, block_ms=100)
    assert (d.job_id, d.deliveries) == ("job1", 1)
    assert (await q.depth())["pending"] == 1
    # a live worker's heartbeat keeps the entry from being taken
    for _ in range(3):
        await asyncio.sleep(0.1)
        await q.heartbeat("w1", d.entry_id)
    assert await q.next("w2", min_idle_ms=200, block_ms=50) is None
    # silence past the visibility timeout: another consumer takes it, delivery counted
    await asyncio.sleep(0.25)
    d2 = await q.next("w2", min_idle_ms=200, block_ms=50)
    assert (d2.entry_id, d2.deliveries) == (d.entry_id, 2)
    await q.ack(d2.entry_id)
    assert await q.depth() == {"waiting": 0, "pending": 0, "consumers": 2}
    await r.aclose()


async def test_finish_exactly_once(redis_url):
    r = aioredis.from_url(redis_url, decode_responses=True)
    store = JobStore(r, 60)
    pipe = r.pipeline()
    store.create_into(pipe, "j", {"status": "queued", "progress": "0"})
    await pipe.execute()
    assert await store.update("j", {"status": "analyzing", "progress": 0.5}, new_delivery=True)
    assert await store.update("j", {"progress": 0.3})  # never backwards
    assert (await store.get("j"))["progress"] == "0.5"
    results = await asyncio.gather(*(store.finish("j", "completed", {"x": i}) for i in range(5)),
                                   store.finish("j", "canceled"))
    assert sum(results) == 1
    assert not await store.update("j", {"progress": 0.9})  # terminal jobs take no more updates
    stats = await store.stats()
    assert stats["total"] == 1 and stats.get("completed", 0) + stats.get("canceled", 0) == 1
    assert 0 < await r.ttl("job:j") <= 60
    assert not await store.finish("missing", "failed")
    await r.aclose()


async def test_token_bucket(redis_url):
    r = aioredis.from_url(redis_url, decode_responses=True)
    limiter = RateLimiter(r, per_minute=600, burst=2)  # 10 per second
    assert await limiter.hit("k") is None and await limiter.hit("k") is None
    wait = await limiter.hit("k")
    assert 0 < wait <= 0.1
    await asyncio.sleep(wait + 0.02)
    assert await limiter.hit("k") is None
    await r.aclose()
