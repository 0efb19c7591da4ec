"""`restyle bench api`: the job API under load, run the way a user runs it.

A private redis-server, local storage in a temp folder, the API as a `restyle api` subprocess
(its own processes, as in production), and the load generator here, in this process, on the
same machine. No worker runs: submits only queue. One API key and a rate limit nobody reaches.
The generator is aiohttp: on these two shared cores its CPU is taken from the server, and
httpx's connection pool costs O(connections) per request (300 streams took 6 s to close).

Figures: submit latency and throughput at several concurrencies (a fixed ~1 MP JPEG,
multipart body built once), status GET latency, and the lag from a progress PUBLISH (by the
store, as a worker does it) to its receipt by each of 500 SSE subscribers of one job.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from .jobs_store import TERMINAL

API_KEY = "bench-key"
CONCURRENCIES = (1, 8, 32, 64)
SUBSCRIBERS = 500  # SSE streams following one job
MARK = "bench t="  # progress messages carry their publish time (this machine's clock) after this


def bench_photo(width: int = 1280, height: int = 800) -> bytes:
    """The deterministic ~1 MP room photo every run submits (sensor-like noise: a realistic size)."""
    import cv2

    from restyle.samples import synthetic_room

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(synthetic_room(width, height, seed=7), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def multipart(photo: bytes, style: str = "modern") -> tuple[bytes, str]:
    """The submit body, encoded once: the generator should spend its CPU sending, not encoding."""
    boundary = secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"style\"\r\n\r\n{style}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"room.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + photo + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


class ApiProcess:
    """`restyle api` on a free port, its settings from the environment like any deployment."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path):
        from restyle.server_ports import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "client_api.cli", "api", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers)],
            env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while self.proc.poll() is None and time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("restyle api did not come up:\n" + log_path.read_text(errors="replace")[-3000:])

    def cpu_s(self) -> float:
        """CPU seconds used so far by `restyle api` and its worker processes: on a shared machine
        the cost per request, unlike latency, does not depend on what else is running."""
        import psutil

        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
            return sum(t.user + t.system for t in (p.cpu_times() for p in procs))
        except psutil.NoSuchProcess:
            return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # uvicorn's supervisor and its worker processes
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def _closed_loop(n: int, concurrency: int, call) -> tuple[list[float], float, int]:
    """n calls from `concurrency` callers each sending the next as soon as its last one returned.
    (latencies in ms of the successful calls, wall seconds, failed calls)."""
    lat: list[float] = []
    failed = 0
    todo = iter(range(n))

    async def caller():
        nonlocal failed
        for _ in todo:
            t0 = time.perf_counter()
            try:
                ok = await call()
            except aiohttp.ClientError:  # a dropped connection counts as a failed call, like a 5xx
                ok = False
            if ok:
                lat.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0, failed


def _client(url: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                 connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=60))


async def _measured(api: ApiProcess, n: int, concurrency: int, call) -> tuple[list[float], float, int, float, float]:
    """_closed_loop, plus the CPU ms per call spent by the server and by this load generator."""
    server0, client0 = api.cpu_s(), time.process_time()
    lat, wall, failed = await _closed_loop(n, concurrency, call)
    return (lat, wall, failed, round((api.cpu_s() - server0) * 1000 / n, 2),
            round((time.process_time() - client0) * 1000 / n, 2))


async def bench_submits(api: ApiProcess, body: bytes, content_type: str, requests: int, out: dict,
                        job_ids: list) -> None:
    async def submit(client):
        async with client.post("/v1/jobs", data=body, headers={"Content-Type": content_type}) as r:
            if r.status != 202:
                return False
            job_ids.append((await r.json())["job_id"])
            return True

    for c in CONCURRENCIES:
        async with _client(api.url, c) as client:
            await _closed_loop(max(2 * c, 10), c, lambda: submit(client))  # open connections, warm both sides
            n = requests if c > 1 else max(requests // 2, 20)
            lat, wall, failed, server_ms, client_ms = await _measured(api, n, c, lambda: submit(client))
        out[f"submit_p50_ms_c{c}"], out[f"submit_p99_ms_c{c}"] = pct(lat, 50), pct(lat, 99)
        out[f"submits_per_s_c{c}"] = round(len(lat) / wall, 1)
        out[f"submit_failed_c{c}"] = failed
        out[f"submit_server_cpu_ms_c{c}"], out[f"submit_loadgen_cpu_ms_c{c}"] = server_ms, client_ms
        print(f"  submit c={c:<3} p50 {out[f'submit_p50_ms_c{c}']:8.1f} ms  p99 {out[f'submit_p99_ms_c{c}']:8.1f} ms"
              f"  {out[f'submits_per_s_c{c}']:7.1f}/s  failed {failed}  CPU ms per submit: server {server_ms},"
              f" load generator {client_ms}", flush=True)


async def bench_status(api: ApiProcess, job_ids: list[str], requests: int, out: dict) -> None:
    rng = np.random.default_rng(0)

    for c in (1, 8):
        async with _client(api.url, c) as client:
            async def get():
                async with client.get(f"/v1/jobs/{job_ids[rng.integers(len(job_ids))]}") as r:
                    await r.read()
                    return r.status == 200

            await _closed_loop(20, c, get)
            lat, _, failed, server_ms, _ = await _measured(api, requests, c, get)
        out[f"status_p50_ms_c{c}"], out[f"status_p99_ms_c{c}"] = pct(lat, 50), pct(lat, 99)
        out[f"status_failed_c{c}"] = failed
        out[f"status_server_cpu_ms_c{c}"] = server_ms
        print(f"  status c={c:<3} p50 {out[f'status_p50_ms_c{c}']:8.1f} ms  p99 {out[f'status_p99_ms_c{c}']:8.1f} ms"
              f"  failed {failed}  server CPU ms per GET {server_ms}", flush=True)


async def _subscriber(client: aiohttp.ClientSession, job_id: str, lags: list[float], first: asyncio.Queue) -> str:
    """Follow one SSE stream to its end: 'terminal', 'unavailable' (the stream said why) or 'broken'.
    Reads whatever arrived at once and splits it into events: 500 of these share this process."""
    greeted = False
    buffer = b""
    try:
        async with client.get(f"/v1/jobs/{job_id}/events") as r:
            if r.status != 200:
                first.put_nowait(False)
                return "broken"
            async for chunk in r.content.iter_any():
                received = time.time()
                *frames, buffer = (buffer + chunk).split(b"\n\n")
                for frame in frames:
                    fields = dict(line.split(b":", 1) for line in frame.split(b"\n") if b":" in line[:6])
                    if b"data" not in fields:
                        continue  # the retry hint, a keepalive comment
                    event = fields.get(b"event", b"message").strip().decode()
                    message = json.loads(fields[b"data"]).get("message") or ""
                    if message.startswith(MARK):
                        lags.append((received - float(message[len(MARK):])) * 1000)
                    if not greeted:
                        greeted = True
                        first.put_nowait(True)
                    if event in TERMINAL:
                        # The other subscribers stamp their receipt before this one's teardown,
                        # as separate clients would: the lag is the server's, not this process's.
                        await asyncio.sleep(0)
                        return "terminal"
                    if event == "unavailable":
                        return "unavailable"
    except aiohttp.ClientError:
        pass
    if not greeted:
        first.put_nowait(False)
    return "broken"


async def bench_events(api: ApiProcess, redis_url: str, body: bytes, content_type: str, progress_events: int,
                       out: dict) -> None:
    from redis.asyncio import Redis

    from .jobs_store import JobStore

    async with _client(api.url, 1) as client, client.post("/v1/jobs", data=body,
                                                      headers={"Content-Type": content_type}) as r:
        job_id = (await r.json())["job_id"]
    subscribers = SUBSCRIBERS
    lags: list[float] = []
    first: asyncio.Queue = asyncio.Queue()
    redis = Redis.from_url(redis_url, decode_responses=True)
    store = JobStore(redis, 3600)
    async with _client(api.url, subscribers + 10) as client:
        tasks = [asyncio.create_task(_subscriber(client, job_id, lags, first)) for _ in range(subscribers)]
        t0 = time.perf_counter()
        connected = sum([await first.get() for _ in range(subscribers)])
        out["events_connect_s"] = round(time.perf_counter() - t0, 2)
        # The 500 connections' objects live to the end: a full collection walking them would
        # stall every receipt here by ~100 ms (a pause of this process, not of the server).
        gc.freeze()
        server0, client0 = api.cpu_s(), time.process_time()
        for i in range(progress_events):  # what a worker publishes while a job runs
            await asyncio.sleep(0.1)
            await store.update(job_id, {"status": "generating", "stage": "diffusion", "step": i + 1,
                                        "total_steps": progress_events, "message": f"{MARK}{time.time():.6f}",
                                        "progress": round(0.05 + 0.9 * (i + 1) / progress_events, 4)})
        await asyncio.sleep(0.1)
        await store.finish(job_id, "canceled", {"message": f"{MARK}{time.time():.6f}", "error": "bench"})
        outcomes = await asyncio.gather(*tasks)
        # CPU ms to deliver one event to every subscriber (server) and to take it in (load generator)
        out["events_server_cpu_ms_per_event"] = round((api.cpu_s() - server0) * 1000 / (progress_events + 1), 1)
        out["events_loadgen_cpu_ms_per_event"] = round((time.process_time() - client0) * 1000 / (progress_events + 1), 1)
    await redis.aclose()
    out["events_p50_lag_ms_500"], out["events_p99_lag_ms_500"] = pct(lags, 50), pct(lags, 99)
    out["events_connected"] = connected
    out["events_terminal"] = outcomes.count("terminal")
    out["events_unavailable"] = outcomes.count("unavailable")
    out["events_broken"] = outcomes.count("broken")
    out["events_received"] = len(lags)
    out["events_expected"] = subscribers * (progress_events + 1)
    print(f"  events {subscribers} subscribers: connected {connected} in {out['events_connect_s']} s, lag p50 "
          f"{out['events_p50_lag_ms_500']} ms p99 {out['events_p99_lag_ms_500']} ms; received {len(lags)} of "
          f"{out['events_expected']}; ended terminal {out['events_terminal']}, unavailable {out['events_unavailable']}, "
          f"broken {out['events_broken']}; CPU ms per event: server {out['events_server_cpu_ms_per_event']}, "
          f"load generator {out['events_loadgen_cpu_ms_per_event']}", flush=True)


def run(*, quick: bool = False, api_workers: int = 1, requests: int | None = None) -> dict:
    from .local_stack import RedisProcess

    requests = requests or (300 if quick else 1500)
    photo = bench_photo()
    body, content_type = multipart(photo)
    tmp = Path(tempfile.mkdtemp(prefix="restyle-bench-api-"))
    redis = RedisProcess()
    api = None
    # The machine's load when the run started: other work on these cores inflates every latency.
    out: dict = {"api_workers": api_workers, "photo_bytes": len(photo), "photo_pixels": 1280 * 800,
                 "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    try:
        env = {"RESTYLE_REDIS_URL": redis.url, "RESTYLE_STORAGE": "local",
               "RESTYLE_LOCAL_STORAGE_DIR": str(tmp / "storage"), "RESTYLE_SIGNING_SECRET": secrets.token_hex(16),
               "RESTYLE_API_KEYS": API_KEY, "RESTYLE_RATE_LIMIT_PER_MINUTE": str(10**9),
               "RESTYLE_PUBLIC_BASE_URL": "http://127.0.0.1"}
        api = ApiProcess(env, api_workers, tmp / "api.log")
        print(f"restyle api ({api_workers} worker process(es)) at {api.url}; redis-server :{redis.port}; "
              f"photo {len(photo)} bytes, 1280x800", flush=True)

        async def main():
            job_ids: list[str] = []
            await bench_submits(api, body, content_type, requests, out, job_ids)
            await bench_status(api, job_ids, requests, out)
            await bench_events(api, redis.url, body, content_type, 5 if quick else 20, out)

        asyncio.run(main())
    finally:
        if api is not None:
            api.stop()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = max(CONCURRENCIES, key=lambda c: out[f"submits_per_s_c{c}"])
    out.update(submit_p50_ms=out["submit_p50_ms_c1"], submit_p99_ms_c8=out["submit_p99_ms_c8"],
               submit_p99_ms_c32=out["submit_p99_ms_c32"], submits_per_s=out[f"submits_per_s_c{best}"],
               submits_best_concurrency=best, status_p99_ms=out["status_p99_ms_c1"])
    return out


TARGETS = {"submit_p50_ms": ("<=", 15), "submit_p99_ms_c8": ("<=", 50), "submits_per_s": (">=", 250),
           "submit_p99_ms_c32": ("<=", 200), "status_p99_ms": ("<=", 10), "events_p99_lag_ms_500": ("<=", 100)}


def report(out: dict) -> None:
    print("\nkey                       value     target")
    for key, (op, target) in TARGETS.items():
        value = out[key]
        ok = value <= target if op == "<=" else value >= target
        print(f"{key:<24} {value:>8}     {op} {target}  {'ok' if ok else 'MISSED'}")


def plot(runs: dict[str, dict], path: Path, title: str) -> None:
    """Submit latency (p50, p99) and throughput against concurrency, one line per labelled run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4))
    for label, out in runs.items():
        for q, style in (("p50", "-o"), ("p99", "--x")):
            lat.plot(CONCURRENCIES, [out[f"submit_{q}_ms_c{c}"] for c in CONCURRENCIES], style, label=f"{label} {q}")
        thr.plot(CONCURRENCIES, [out[f"submits_per_s_c{c}"] for c in CONCURRENCIES], "-o", label=label)
    lat.set(xscale="log", yscale="log", xlabel="requests in flight", ylabel="submit latency (ms)")
    thr.set(xscale="log", xlabel="requests in flight", ylabel="submits per second")
    for ax in (lat, thr):
        ax.set_xticks(CONCURRENCIES, [str(c) for c in CONCURRENCIES])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
