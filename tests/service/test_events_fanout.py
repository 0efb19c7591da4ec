"""Live events fan out in-process: watchers cost no Redis connection, a slow one holds nobody up,
and a stream that cannot go on says so before it ends."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis
from svc_helpers import jpeg, submit, wait_for, ws_events

from client_api.events_hub import QUEUE_SIZE, EventHub, EventsUnavailable, Final, Watch
from client_api.jobs_store import JobStore
from client_api.local_stack import RedisProcess


@pytest.fixture
def own_redis():
    """A redis-server of this test's own: it gets a low client limit, or is stopped mid-stream."""
    proc = RedisProcess()
    yield proc
    proc.stop()


async def _follow(client: httpx.AsyncClient, job_id: str, greeted: asyncio.Queue) -> list[str]:
    names, event = [], None
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                names.append(event)
                if len(names) == 1:
                    greeted.put_nowait(None)
    return names


def test_hundreds_of_watchers_share_one_connection(own_redis, make_settings, start_api):
    n = 300
    admin = sync_redis.Redis.from_url(own_redis.url, decode_responses=True)
    admin.config_set("maxclients", 30)  # one Redis connection per watcher would be refused
    api = start_api(make_settings(redis_url=own_redis.url, redis_max_connections=8))
    job_id = submit(api.url, jpeg()).json()["job_id"]

    async def main():
        greeted: asyncio.Queue = asyncio.Queue()
        async with httpx.AsyncClient(base_url=api.url, limits=httpx.Limits(max_connections=n + 5),
                                     timeout=httpx.Timeout(60)) as client:
            watchers = [asyncio.create_task(_follow(client, job_id, greeted)) for _ in range(n)]
            for _ in range(n):
                await asyncio.wait_for(greeted.get(), 60)
            assert int(admin.info("clients")["connected_clients"]) < 30
            assert admin.pubsub_numpat() == 1  # one pattern subscription for the whole API process
            r = Redis.from_url(own_redis.url, decode_responses=True)
            store = JobStore(r, 60)  # publishing the way a worker does
            for i in range(5):
                await store.update(job_id, {"status": "generating", "stage": "diffusion", "progress": 0.1 * (i + 1)})
            await store.finish(job_id, "canceled", {"message": "Canceled"})
            await r.aclose()
            return await asyncio.gather(*watchers)

    results = asyncio.run(main())
    assert all(names[-1] == "canceled" for names in results), {tuple(x[-1:]) for x in results}
    assert all(set(names[:-1]) <= {"progress"} for names in results)
    hub = api.server.config.app.state.events
    wait_for(lambda: hub.watchers() == 0, timeout=10)


def test_disconnected_watcher_is_cleaned_up(make_settings, start_api, rdb):
    api = start_api(make_settings())
    hub = api.server.config.app.state.events
    job_id = submit(api.url, jpeg()).json()["job_id"]
    with httpx.stream("GET", f"{api.url}/v1/jobs/{job_id}/events", timeout=10) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: progress"
        assert hub.watchers() == 1
    wait_for(lambda: hub.watchers() == 0, timeout=10)  # the client left: its watch is gone
    # and the WebSocket's, after its terminal event
    rdb.hset(f"job:{job_id}", "status", "canceled")
    assert [m["event"] for m in ws_events(api.url, job_id)] == ["canceled"]
    wait_for(lambda: hub.watchers() == 0, timeout=10)


def test_redis_lost_mid_stream_ends_with_an_event(own_redis, make_settings, start_api):
    api = start_api(make_settings(redis_url=own_redis.url))
    job_id = submit(api.url, jpeg()).json()["job_id"]
    events = []
    with httpx.stream("GET", f"{api.url}/v1/jobs/{job_id}/events", timeout=30) as r:
        event = None
        for line in r.iter_lines():  # a broken response would raise here
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
                if len(events) == 1:
                    own_redis.stop()
    assert [e for e, _ in events] == ["progress", "unavailable"]
    assert "reconnect" in events[-1][1]["error"] and events[-1][1]["job_id"] == job_id
    # a watcher arriving while Redis is away gets a plain 503, not a stream
    r = httpx.get(f"{api.url}/v1/jobs/{job_id}/events")
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"


def test_keepalives_and_a_job_that_ends_unseen(make_settings, start_api, rdb):
    """The hub re-reads each watched job every keepalive: streams get a keepalive while it runs,
    and its end (or its disappearance) even when no publish told anyone."""
    api = start_api(make_settings(events_keepalive_s=0.3))
    ended, deleted = (submit(api.url, jpeg()).json()["job_id"] for _ in range(2))

    def follow(job_id: str, change) -> list[str]:
        lines = []
        with httpx.stream("GET", f"{api.url}/v1/jobs/{job_id}/events", timeout=10) as r:
            for line in r.iter_lines():
                lines.append(line)
                if lines.count(": keepalive") == 2:
                    change()  # written straight to Redis: no publish
        return [x for x in lines if x.startswith(("event:", ":"))]

    lines = follow(ended, lambda: rdb.hset(f"job:{ended}", "status", "canceled"))
    assert lines[0] == "event: progress" and lines[-1] == "event: canceled"
    assert lines[1:-1] == [": keepalive"] * 2
    lines = follow(deleted, lambda: rdb.delete(f"job:{deleted}"))
    assert lines[-1] == "event: deleted"
    hub = api.server.config.app.state.events
    wait_for(lambda: hub.watchers() == 0, timeout=10)


def test_slow_watcher_keeps_the_newest_and_the_terminal_event():
    async def main():
        hub = EventHub("redis://127.0.0.1:1/0", store=None, timeout_s=1)  # never started: no Redis needed
        w = Watch(hub, "x")
        for i in range(3 * QUEUE_SIZE):
            w.offer(json.dumps({"progress": i}))
            w.offer(None)  # a keepalive only reaches a watcher with nothing else to send
        w.offer(Final({"status": "completed"}))
        w.offer(json.dumps({"progress": -1}))  # nothing after the end
        items = [await w.next() for _ in range(QUEUE_SIZE)]
        assert isinstance(items[-1], Final) and w.dropped == 2 * QUEUE_SIZE + 1
        assert [json.loads(i)["progress"] for i in items[:-1]] == list(range(2 * QUEUE_SIZE + 1, 3 * QUEUE_SIZE))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w.next(), 0.05)

        with pytest.raises(EventsUnavailable):  # a watch on a hub without its connection
            await hub.watch("y").next()
        await hub.close()

    asyncio.run(main())
