"""Job records in Redis: the `job:{id}` hash, `job:stats`, and progress over pub/sub.

Every state change is one Lua script, so "is the job still running?" and "change it"
happen atomically. That is what makes completion exactly-once: a job delivered twice,
or canceled while a worker finishes it, is finalised by whichever script runs first and
the other one is told (return 0) and backs off.
"""
from __future__ import annotations

import hashlib
import json
import time

from redis.asyncio import Redis

TERMINAL = ("completed", "failed", "canceled")
STATS_KEY = "job:stats"
# Fields holding storage keys; records written before they were renamed used the old names.
_RENAMED = {"original_url": "original_key", "result_url": "result_key", "thumbnail_url": "thumbnail_key"}


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def idempotency_key(owner: str, key: str) -> str:
    """Where a client's Idempotency-Key is remembered (hashed: it may be long or odd)."""
    return f"idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"


def channel(job_id: str) -> str:
    return f"job:{job_id}:events"


def now() -> str:
    return f"{time.time():.3f}"


# Field updates for an active job. Progress never goes backwards (a redelivered job
# restarts its pipeline, but a user should not see the bar jump back).
_PROGRESS = """
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'completed' or st == 'failed' or st == 'canceled' then return 0 end
local f = cjson.decode(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
if f.progress and tonumber(f.progress) < cur then f.progress = tostring(cur) end
if f.started_at and redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then f.started_at = nil end
for k, v in pairs(f) do redis.call('HSET', KEYS[1], k, v) end
if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'deliveries', 1) end
f.job_id = ARGV[3]
f.status = f.status or st
f.progress = f.progress or tostring(cur)
redis.call('PUBLISH', KEYS[2], cjson.encode(f))
return 1
"""

# Move an active job to a terminal state once; count it in job:stats.
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'completed' or st == 'failed' or st == 'canceled' then return 0 end
local f = cjson.decode(ARGV[1])
for k, v in pairs(f) do redis.call('HSET', KEYS[1], k, v) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local incr = cjson.decode(ARGV[3])
for k, v in pairs(incr) do redis.call('HINCRBYFLOAT', KEYS[3], k, v) end
redis.call('PUBLISH', KEYS[2], cjson.encode({job_id = ARGV[4], status = f.status,
  progress = f.progress, stage = f.stage, message = f.message}))
return 1
"""


def _renamed(data: dict) -> dict | None:
    for old, new in _RENAMED.items():
        if old in data:
            data.setdefault(new, data.pop(old))
    return data or None


class JobStore:
    def __init__(self, redis: Redis, job_ttl_s: int):
        self.r = redis
        self.ttl = job_ttl_s
        self._progress = redis.register_script(_PROGRESS)
        self._finish = redis.register_script(_FINISH)

    async def get(self, job_id: str) -> dict | None:
        return _renamed(await self.r.hgetall(job_key(job_id)))

    async def get_many(self, job_ids: list[str]) -> list[dict | None]:
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [_renamed(data) for data in await pipe.execute()]

    async def status(self, job_id: str) -> str | None:
        return await self.r.hget(job_key(job_id), "status")

    def create_into(self, pipe, job_id: str, fields: dict) -> None:
        """Queue the writes that create a job on a MULTI pipeline (the caller adds the XADD)."""
        pipe.hset(job_key(job_id), mapping=fields)
        pipe.expire(job_key(job_id), self.ttl)
        pipe.hincrby(STATS_KEY, "total", 1)

    async def update(self, job_id: str, fields: dict, *, new_delivery: bool = False) -> bool:
        fields = {k: str(v) for k, v in fields.items() if v is not None}
        ok = await self._progress(keys=[job_key(job_id), channel(job_id)],
                                  args=[json.dumps(fields), "1" if new_delivery else "0", job_id])
        return bool(ok)

    async def finish(self, job_id: str, status: str, fields: dict | None = None,
                     stats: dict[str, float] | None = None) -> bool:
        """Set a terminal status if the job is still active. True only for the one caller that did."""
        assert status in TERMINAL
        f = {"status": status, "completed_at": now(), **(fields or {})}
        if status == "completed":
            f.setdefault("progress", "1.0")
        f = {k: str(v) for k, v in f.items() if v is not None}
        incr = {status: 1, **(stats or {})}
        ok = await self._finish(keys=[job_key(job_id), channel(job_id), STATS_KEY],
                                args=[json.dumps(f), self.ttl, json.dumps(incr), job_id])
        return bool(ok)

    async def delete(self, job_id: str) -> None:
        await self.r.delete(job_key(job_id))

    async def stats(self) -> dict[str, float]:
        raw = await self.r.hgetall(STATS_KEY)
        return {k: float(v) for k, v in raw.items()}


def failure_stats(reason: str) -> dict[str, float]:
    return {f"failed_reason:{reason}": 1}


def completion_stats(processing_time: float, timings: dict[str, float]) -> dict[str, float]:
    out = {"processing_time_total": processing_time}
    for stage, seconds in timings.items():
        out[f"stage_time:{stage}"] = float(seconds)
        out[f"stage_count:{stage}"] = 1
    return out


def summarize(stats: dict[str, float]) -> dict:
    completed = stats.get("completed", 0)
    return {
        "total": int(stats.get("total", 0)),
        "completed": int(completed),
        "failed": int(stats.get("failed", 0)),
        "canceled": int(stats.get("canceled", 0)),
        "average_processing_time_s": (stats.get("processing_time_total", 0) / completed) if completed else None,
        "failures_by_reason": {k.split(":", 1)[1]: int(v) for k, v in stats.items()
                               if k.startswith("failed_reason:")},
    }
