"""Each owner's jobs, newest first: a sorted set per API key (score = created_at) beside the job records.

Written at submit in the same MULTI as the record; a member whose record expired or was deleted is
dropped when a listing meets it, and the set itself expires with its newest job, so nothing outlives
the records it points at. The order is total ((score, id), both descending), which makes a cursor of
the last item seen exact even when two jobs share a timestamp.
"""
from __future__ import annotations

import base64

from redis.asyncio import Redis

from .errors import AppError
from .jobs_store import JobStore


def owner_key(owner: str) -> str:
    return f"owner:{owner}:jobs"


def add_into(pipe, owner: str, job_id: str, created_at: str, ttl_s: int) -> None:
    pipe.zadd(owner_key(owner), {job_id: float(created_at)})
    pipe.expire(owner_key(owner), ttl_s)


async def remove(redis: Redis, owner: str, job_id: str) -> None:
    await redis.zrem(owner_key(owner), job_id)


def encode_cursor(score: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score!r} {job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        score, job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(" ")
        return float(score), job_id
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise AppError(422, "invalid_cursor", "this cursor is not one the listing gave; start without it") from None


async def _after(redis: Redis, key: str, after: tuple[float, str] | None, n: int) -> list[tuple[str, float]]:
    """The next n (job id, score) after `after` in newest-first order."""
    if after is None:
        return await redis.zrange(key, "+inf", "-inf", desc=True, byscore=True, offset=0, num=n, withscores=True)
    score, last = after
    ties = sorted((m for m in await redis.zrange(key, score, score, byscore=True) if m < last), reverse=True)
    older = await redis.zrange(key, f"({score!r}", "-inf", desc=True, byscore=True, offset=0, num=n,
                               withscores=True)
    return ([(m, score) for m in ties] + older)[:n]


async def page(store: JobStore, owner: str, limit: int,
               cursor: str | None) -> tuple[list[tuple[str, dict]], str | None]:
    """Up to `limit` (job id, record) pairs after `cursor`, newest first, and the next cursor (None: the end)."""
    key = owner_key(owner)
    after = decode_cursor(cursor) if cursor else None
    out: list[tuple[str, dict]] = []
    while True:
        want = limit - len(out) + 1  # one more than needed: tells whether anything follows
        batch = await _after(store.r, key, after, want)
        records = await store.get_many([job_id for job_id, _ in batch])
        gone = [job_id for (job_id, _), rec in zip(batch, records) if rec is None]
        if gone:  # expired or deleted without the index hearing of it
            await store.r.zrem(key, *gone)
        for (job_id, score), rec in zip(batch, records):
            if len(out) == limit:
                return out, encode_cursor(*after)
            after = (score, job_id)
            if rec is not None:
                out.append((job_id, rec))
        if len(batch) < want:
            return out, None
