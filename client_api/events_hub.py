"""Live job events for every watcher in this API process, over one Redis pub/sub connection.

A watcher (an SSE stream or a WebSocket) costs an in-process queue, never a Redis
connection: the hub holds one PSUBSCRIBE on every job's channel and hands each message to
the local watchers of that job. A pattern rather than SUBSCRIBE per watched job: nothing to
send to Redis when a watcher comes or goes (no subscribe/unsubscribe races), at the price of
receiving every job's progress (tens of messages per job, which GPU-bound jobs keep rare).

A slow watcher cannot hold anyone up: its queue is bounded and drops its oldest progress;
the terminal event is never dropped. Each message is handled once for all watchers of a job:
progress is encoded to JSON once, the terminal event carries the job record read once and a
memo of its rendering (the fan-out to hundreds of streams is then a write per stream).
When the connection is lost every watcher is told, and the next watcher reconnects.

Keepalives come from the hub too: every `keepalive_s` it reads each watched job once and hands
its watchers a keepalive (None), or the Final of a job that ended or vanished without a
publish reaching us. One read per job rather than per watcher, and no timer per watcher.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .jobs_store import TERMINAL, JobStore, channel

log = logging.getLogger("restyle.events")

PATTERN = channel("*")
QUEUE_SIZE = 32  # progress messages a watcher may fall behind before its oldest are dropped


class EventsUnavailable(Exception):
    """The pub/sub connection is gone: live events cannot go on (the client should reconnect)."""


@dataclass
class Final:
    """The job ended: its record (None if it was deleted meanwhile), read after the terminal publish.
    `frames` is for the watchers to render it once per base URL and share the result."""
    record: dict | None
    frames: dict = field(default_factory=dict)


_LOST = object()


def _typed(data: dict) -> dict:
    """Redis hands every hash field back as a string; clients get numbers."""
    for k, cast in (("progress", float), ("step", int), ("total_steps", int)):
        if data.get(k) is not None:
            data[k] = cast(data[k])
    return data


def _news(record):
    """What a job's watchers get from a fresh read of its record."""
    if record is _LOST:
        return _LOST
    if not record or record.get("status") in TERMINAL:
        return Final(record)
    return None  # still running: a keepalive


class Watch:
    """One watcher's view of one job: progress (JSON text) and keepalives (None), then a Final
    (or EventsUnavailable)."""

    def __init__(self, hub: EventHub, job_id: str):
        self._hub, self.job_id, self.channel = hub, job_id, channel(job_id)
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._ended = False
        self.dropped = 0

    def offer(self, item) -> None:
        if self._ended or (item is None and not self._queue.empty()):  # a keepalive only when idle
            return
        self._ended = item is _LOST or isinstance(item, Final)
        if self._queue.full():  # a slow reader: skip its oldest progress, the newer says more
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def next(self) -> str | Final | None:
        item = await self._queue.get()
        if item is _LOST:
            raise EventsUnavailable
        return item

    def close(self) -> None:
        self._hub._discard(self)


class EventHub:
    def __init__(self, redis_url: str, store: JobStore, timeout_s: float, keepalive_s: float = 15.0):
        # Its own connection, without retries: a lost connection is reported to the watchers
        # at once (their clients reconnect) instead of after a silent backoff that loses
        # messages anyway. No health-check PINGs: they would read from under the reader task.
        self._redis = Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=timeout_s,
                                     socket_keepalive=True, health_check_interval=0, retry=Retry(NoBackoff(), 0))
        self._store = store
        self._timeout, self._keepalive = timeout_s, keepalive_s
        self._reader: asyncio.Task | None = None
        self._watches: dict[str, set[Watch]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def start(self) -> None:
        """Subscribed, and Redis has confirmed it (a no-op when already); RedisError if unreachable."""
        if self.connected:
            return
        async with self._lock:
            if self.connected:
                return
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(PATTERN)
                # From the confirmation on, every publish reaches us: watchers read the job after it.
                confirm = await pubsub.get_message(timeout=self._timeout)
                if not confirm or confirm["type"] != "psubscribe":
                    raise RedisTimeoutError("no PSUBSCRIBE confirmation from Redis")
            except BaseException:
                await pubsub.aclose()
                raise
            self._reader = asyncio.create_task(self._read(pubsub))

    def watch(self, job_id: str) -> Watch:
        """Register a watcher (call start() first); close() it when done."""
        w = Watch(self, job_id)
        if self.connected:
            self._watches.setdefault(w.channel, set()).add(w)
        else:  # lost between start() and now
            w.offer(_LOST)
        return w

    def _discard(self, w: Watch) -> None:
        watchers = self._watches.get(w.channel)
        if watchers is not None:
            watchers.discard(w)
            if not watchers:
                del self._watches[w.channel]

    def watchers(self) -> int:
        return sum(len(ws) for ws in self._watches.values())

    async def _read(self, pubsub) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time() + self._keepalive
        try:
            while True:
                msg = await pubsub.get_message(timeout=max(tick - loop.time(), 0))
                if loop.time() >= tick:
                    tick = loop.time() + self._keepalive
                    if self._watches:
                        self._spawn(self._reread(*(next(iter(ws)).job_id for ws in self._watches.values())))
                if not msg or msg["type"] != "pmessage" or msg["channel"] not in self._watches:
                    continue
                data = _typed(json.loads(msg["data"]))
                if data.get("status") in TERMINAL:
                    self._spawn(self._reread(data["job_id"]))
                else:
                    self._offer(msg["channel"], json.dumps(data))
        except (RedisError, OSError) as e:
            log.warning("live events: lost the Redis pub/sub connection (%s); telling %d watcher(s)",
                        type(e).__name__, self.watchers())
        finally:
            if self._reader is asyncio.current_task():  # not connected from here on: start() reconnects
                self._reader = None
            self._lose_all()
            await pubsub.aclose()

    async def _reread(self, *job_ids: str) -> None:
        """Read jobs in one round trip, once for all their watchers: a job's Final if it ended or
        is gone (the store sets the terminal record before it publishes, so after that publish
        this is the final record), else a keepalive."""
        try:
            records = await self._store.get_many(list(job_ids))
        except RedisError:
            records = [_LOST] * len(job_ids)
        for job_id, record in zip(job_ids, records):
            self._offer(channel(job_id), _news(record))

    def _offer(self, chan: str, item) -> None:
        for w in list(self._watches.get(chan, ())):
            w.offer(item)

    def _lose_all(self) -> None:
        watches, self._watches = self._watches, {}
        for ws in watches.values():
            for w in ws:
                w.offer(_LOST)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._lose_all()
        await self._redis.aclose()
