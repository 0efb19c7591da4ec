"""`restyle soak`: N jobs over M minutes while workers, tritonserver and redis-server are killed at random.

Everything runs here, as separate processes: redis-server with AOF everysec (as the chart ships it),
a tiny tritonserver, the API and several `restyle worker`s. A chaos loop SIGKILLs one of them now and
then and starts it again (Triton after a pause, so jobs really wait). At the end it drains and counts:
accepted (202), completed, failed by reason, doubled (a job finalised twice, seen as two terminal
events on its channel), lost (accepted but never finished, or its record gone) and the longest wait
from submission to the end. Not a test: a load run that takes minutes (see BENCHMARKS.md).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis as sync_redis

from restyle.server_ports import free_port

from .jobs_store import TERMINAL, job_key
from .local_stack import RedisProcess

TRITON_PAUSE_S = (5.0, 20.0)  # how long tritonserver stays dead before it is started again
REDIS_PAUSE_S = (0.5, 3.0)


@dataclass
class Tally:
    accepted: list[str] = field(default_factory=list)
    refused: Counter = field(default_factory=Counter)  # submissions that never got a 202, by status
    kills: Counter = field(default_factory=Counter)
    terminal_events: Counter = field(default_factory=Counter)  # job id -> terminal events seen
    lock: threading.Lock = field(default_factory=threading.Lock)


class Stack:
    """The processes under test, each killable and restartable."""

    def __init__(self, workers: int, run_dir: Path, log):
        from restyle import server

        self.run_dir, self.log, self.server = run_dir, log, server
        self.redis = RedisProcess(aof=True)
        self.triton_ports = tuple(free_port(restartable=True) for _ in range(3))
        log("starting tritonserver (tiny)...")
        self.triton = server.start("tiny", *self.triton_ports, run_dir=run_dir)
        self.api_port = free_port()
        self.env = {**os.environ, "RESTYLE_REDIS_URL": self.redis.url, "RESTYLE_TRITON_GRPC_URL": self.triton.grpc_url,
                    "RESTYLE_LOCAL_STORAGE_DIR": str(run_dir / "store"),
                    "RESTYLE_SIGNING_SECRET": "soak", "RESTYLE_RATE_LIMIT_PER_MINUTE": "100000",
                    "RESTYLE_VISIBILITY_TIMEOUT_S": "20", "RESTYLE_OUTAGE_BACKOFF_S": "0.5",
                    "RESTYLE_OUTAGE_BACKOFF_MAX_S": "5"}
        self.api = self._spawn("api", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.workers = [self._spawn("worker") for _ in range(workers)]
        self.url = f"http://127.0.0.1:{self.api_port}"
        deadline = time.time() + 60
        while not self._api_up():
            if time.time() > deadline:
                raise RuntimeError(f"the API did not start; see {run_dir}/api.log")
            time.sleep(0.5)
        self.triton_lock = threading.Lock()

    def _spawn(self, *args) -> subprocess.Popen:
        name = args[0]
        out = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child writes it while it lives
        return subprocess.Popen([sys.executable, "-m", "client_api.cli", *args], env=self.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill_worker(self, rng: random.Random) -> bool:
        i = rng.randrange(len(self.workers))
        self.workers[i].kill()
        self.workers[i].wait()
        self.workers[i] = self._spawn("worker")
        return True

    def kill_triton(self, rng: random.Random) -> bool:
        """SIGKILL; a thread starts it again after a pause (plus ~25 s of loading) while the chaos goes on."""
        if not self.triton_lock.acquire(blocking=False):
            return False  # down already
        os.killpg(self.triton.pid, signal.SIGKILL)
        while self.triton.alive():
            time.sleep(0.1)
        threading.Thread(target=self._start_triton, args=(rng.uniform(*TRITON_PAUSE_S),), daemon=True).start()
        return True

    def _start_triton(self, pause_s: float) -> None:
        try:
            time.sleep(pause_s)
            self.triton = self.server.start("tiny", *self.triton_ports, run_dir=self.run_dir)
        finally:
            self.triton_lock.release()

    def triton_up(self) -> None:
        with self.triton_lock:  # a restart under way has finished
            pass

    def kill_redis(self, rng: random.Random) -> bool:
        self.redis.kill()
        time.sleep(rng.uniform(*REDIS_PAUSE_S))
        self.redis.restart()  # same port, same AOF: what was fsynced comes back
        return True

    def stop(self) -> None:
        for p in [self.api, *self.workers]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # handled even when started with SIGINT ignored (in the background)
        for p in [self.api, *self.workers]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.triton.stop(timeout_s=10)
        self.redis.stop()


def _watch_events(redis_url: str, tally: Tally, stop: threading.Event) -> None:
    """Count terminal events per job on the job channels, reconnecting after each Redis restart."""
    while not stop.is_set():
        try:
            pubsub = sync_redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5).pubsub()
            pubsub.psubscribe("job:*:events")
            while not stop.is_set():
                msg = pubsub.get_message(timeout=1.0)
                if msg and msg["type"] == "pmessage":
                    data = json.loads(msg["data"])
                    if data.get("status") in TERMINAL:
                        with tally.lock:
                            tally.terminal_events[data["job_id"]] += 1
        except (sync_redis.RedisError, OSError):
            time.sleep(0.5)


def _submit(url: str, photo: bytes, seed: int, steps: int, tally: Tally, stop: threading.Event) -> None:
    """One job; 503 (Redis down) is retried as Retry-After says, as a client would."""
    while not stop.is_set():
        try:
            r = httpx.post(f"{url}/v1/jobs", data={"style": "modern", "steps": str(steps), "seed": str(seed)},
                           files={"file": ("room.jpg", photo, "image/jpeg")}, timeout=30)
        except httpx.TransportError:
            time.sleep(1)
            continue
        if r.status_code == 202:
            with tally.lock:
                tally.accepted.append(r.json()["job_id"])
            return
        if r.status_code != 503:
            with tally.lock:
                tally.refused[r.status_code] += 1
            return
        time.sleep(float(r.headers.get("Retry-After", "1")))


def _chaos(stack: Stack, rng: random.Random, every_s: float, tally: Tally, stop: threading.Event, log) -> None:
    kills = {"worker": stack.kill_worker, "tritonserver": stack.kill_triton, "redis-server": stack.kill_redis}
    while not stop.wait(rng.expovariate(1 / every_s)):
        victim = rng.choice([k for k in kills if k != "tritonserver" or not stack.triton_lock.locked()])
        try:
            killed = kills[victim](rng)
        except Exception as exc:  # noqa: BLE001 - a failed restart is reported, the soak goes on
            log(f"chaos: restarting {victim} failed: {exc}")
            killed = True
        if killed:
            log(f"chaos: SIGKILLed {victim} at {time.strftime('%H:%M:%S')}")
            with tally.lock:
                tally.kills[victim] += 1
    stack.triton_up()


def report(r: sync_redis.Redis, tally: Tally) -> dict:
    """The figures, from the job records and the events seen."""
    failed: Counter = Counter()
    completed, lost, longest = 0, [], 0.0
    for job_id in tally.accepted:
        rec = r.hgetall(job_key(job_id))
        status = rec.get("status")
        if status not in TERMINAL:
            lost.append(job_id)
            continue
        completed += status == "completed"
        if status == "failed":
            failed[rec.get("error_reason", "?")] += 1
        longest = max(longest, float(rec["completed_at"]) - float(rec["created_at"]))
    return {"accepted": len(tally.accepted), "refused": dict(tally.refused), "completed": completed,
            "failed": dict(failed), "doubled": sum(n > 1 for n in tally.terminal_events.values()),
            "lost": len(lost), "lost_ids": lost[:10], "longest_wait_s": round(longest, 1),
            "kills": dict(tally.kills)}


def run_soak(jobs: int, minutes: float, workers: int, kill_every_s: float, steps: int, drain_minutes: float,
             seed: int, log=print) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from restyle.imaging import encode_jpeg
    from restyle.samples import synthetic_room

    rng = random.Random(seed)
    run_dir = Path(tempfile.mkdtemp(prefix="restyle-soak-"))
    log(f"soak: {jobs} jobs over {minutes:g} min, {workers} workers, a kill every ~{kill_every_s:g} s; "
        f"logs in {run_dir}")
    photo = encode_jpeg(synthetic_room(320, 240))
    tally, stop_chaos, stop_all = Tally(), threading.Event(), threading.Event()
    stack = Stack(workers, run_dir, log)
    threads = [threading.Thread(target=_watch_events, args=(stack.redis.url, tally, stop_all), daemon=True),
               threading.Thread(target=_chaos, args=(stack, rng, kill_every_s, tally, stop_chaos, log), daemon=True)]
    for t in threads:
        t.start()
    r = sync_redis.Redis.from_url(stack.redis.url, decode_responses=True, socket_timeout=5)
    t0, end = time.time(), time.time() + minutes * 60
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[figures]}"),
                      TimeElapsedColumn()) as bar:
            task = bar.add_task("soak", total=jobs, figures="")
            submitters = []
            for i in range(jobs):  # evenly over the run, each submission in its own thread (503s are retried)
                while time.time() < t0 + i * minutes * 60 / jobs:
                    _progress(bar, task, r, tally)
                    time.sleep(0.5)
                submitters.append(threading.Thread(target=_submit, args=(stack.url, photo, i, steps, tally,
                                                                         stop_all), daemon=True))
                submitters[-1].start()
            while time.time() < end:
                _progress(bar, task, r, tally)
                time.sleep(1)
            stop_chaos.set()
            bar.update(task, description="drain")
            threads[1].join()  # restarts under way finish first
            for s in submitters:
                s.join(60)
            drain_end = time.time() + drain_minutes * 60
            while time.time() < drain_end and _progress(bar, task, r, tally) < len(tally.accepted):
                time.sleep(1)
        time.sleep(2)  # the last terminal events reach the watcher
        figures = report(r, tally)
    finally:
        stop_all.set()
        stack.stop()
    figures["minutes"] = round((time.time() - t0) / 60, 1)
    return figures


def _progress(bar, task, r: sync_redis.Redis, tally: Tally) -> int:
    """Refresh the bar; returns how many accepted jobs have finished."""
    with tally.lock:
        ids, kills = list(tally.accepted), sum(tally.kills.values())
    try:
        statuses = [r.hget(job_key(j), "status") for j in ids]
    except (sync_redis.RedisError, OSError):
        return 0  # Redis is down this moment
    done = sum(s in TERMINAL for s in statuses)
    failed = statuses.count("failed")
    bar.update(task, completed=done, figures=f"accepted {len(ids)}  finished {done}  failed {failed}  kills {kills}")
    return done
