"""The job queue: a Redis Stream read through a consumer group.

At-least-once: an entry stays in the group's pending list until XACK, which the worker
sends only after the result is stored and the job finalised. A worker that dies leaves
its entry pending; once it is idle longer than the visibility timeout another worker
takes it with XAUTOCLAIM. A live worker on a long job keeps its entry fresh with a
heartbeat (XCLAIM ... JUSTID resets the idle time without counting a delivery).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .outages import STORAGE, TRITON, outage_key

OUTAGE_KEYS = [outage_key(TRITON), outage_key(STORAGE)]  # what workers report as down, and since when


@dataclass
class Delivery:
    entry_id: str
    job_id: str
    deliveries: int  # how many times this entry has been handed to a consumer, this one included


class JobQueue:
    def __init__(self, redis: Redis, stream: str, group: str):
        self.r, self.stream, self.group = redis, stream, group

    async def ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def enqueue_into(self, pipe, job_id: str) -> None:
        pipe.xadd(self.stream, {"job_id": job_id})

    async def claim_stale(self, consumer: str, min_idle_ms: int) -> Delivery | None:
        """Take over one entry whose consumer has gone quiet (crashed or hung)."""
        _, claimed, *_ = await self.r.xautoclaim(
            self.stream, self.group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=1)
        for entry_id, fields in claimed:
            if fields is None:  # trimmed from the stream meanwhile
                await self.ack(entry_id)
                continue
            pending = await self.r.xpending_range(self.stream, self.group, min=entry_id,
                                                  max=entry_id, count=1)
            count = pending[0]["times_delivered"] if pending else 1
            return Delivery(entry_id, fields["job_id"], count)
        return None

    async def read_new(self, consumer: str, block_ms: int) -> Delivery | None:
        resp = await self.r.xreadgroup(self.group, consumer, {self.stream: ">"}, count=1, block=block_ms)
        for _, entries in resp or []:
            for entry_id, fields in entries:
                return Delivery(entry_id, fields["job_id"], 1)
        return None

    async def next(self, consumer: str, min_idle_ms: int, block_ms: int) -> Delivery | None:
        # Stale entries first: they are the oldest work and someone is waiting on them.
        return await self.claim_stale(consumer, min_idle_ms) or await self.read_new(consumer, block_ms)

    async def heartbeat(self, consumer: str, entry_id: str) -> None:
        await self.r.xclaim(self.stream, self.group, consumer, 0, [entry_id], justid=True)

    async def ack(self, entry_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.xdel(self.stream, entry_id)  # keep the stream as small as the backlog
        await pipe.execute()

    async def depth(self) -> dict[str, int]:
        """waiting = not yet delivered; pending = delivered, not yet acknowledged."""
        try:
            groups = await self.r.xinfo_groups(self.stream)
        except ResponseError:  # no stream yet
            return {"waiting": 0, "pending": 0, "consumers": 0}
        return self.depth_from(groups, await self.r.xlen(self.stream))

    def depth_into(self, pipe) -> None:
        """Queue the reads of depth_from() on a pipeline that has just XADDed (so the stream exists)."""
        pipe.xinfo_groups(self.stream)
        pipe.xlen(self.stream)

    def depth_from(self, groups: list[dict], length: int) -> dict[str, int]:
        # Acked entries are deleted, so the stream holds exactly waiting + pending entries
        # (XINFO's `lag` turns nil after deletions, so it is not used).
        g = next((g for g in groups if g["name"] == self.group), {"pending": 0, "consumers": 0})
        pending = int(g["pending"])
        return {"waiting": max(0, length - pending), "pending": pending, "consumers": int(g["consumers"])}

    async def position(self, job_id: str, look: int = 100) -> int | None:
        """A waiting job's place in the queue (1: next to start); None when it is not among the first `look`
        waiting entries (further back, or already delivered). Waiting entries follow the group's last
        delivered id, so this reads at most `look` of them."""
        try:
            groups = await self.r.xinfo_groups(self.stream)
        except ResponseError:  # no stream yet
            return None
        g = next((g for g in groups if g["name"] == self.group), None)
        start = f"({g['last-delivered-id']}" if g else "-"
        entries = await self.r.xrange(self.stream, min=start, max="+", count=look)
        return next((i for i, (_, fields) in enumerate(entries, 1) if fields.get("job_id") == job_id), None)

    async def outage_s(self) -> float:
        """How long the longest outage of Triton or storage that workers report has lasted (0: none):
        while it lasts the queue does not move."""
        return self.outage_from(await self.r.mget(OUTAGE_KEYS))

    def outage_into(self, pipe) -> None:
        pipe.mget(OUTAGE_KEYS)

    async def down(self) -> str | None:
        """The dependency workers report as down (the model server first), or None."""
        starts = await self.r.mget(OUTAGE_KEYS)
        return next((name for name, t in zip((TRITON, STORAGE), starts) if t), None)

    @staticmethod
    def outage_from(starts: list[str | None]) -> float:
        return round(max((time.time() - float(t) for t in starts if t), default=0.0), 1)
