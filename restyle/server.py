"""Run a real tritonserver without Docker, from the nvidia-pytriton wheel.

The wheel carries tritonserver 2.51 and its python backend; the backend's stub embeds the
interpreter whose libpython it finds, and that interpreter picks its site-packages from the
first `python3` on PATH, so the venv's bin goes first (else the system's numpy 2 is loaded,
and the 2.51 backend returns empty tensors under numpy 2).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytriton

from restyle.server_ports import port_in_use
from restyle.settings import get_settings

WHEEL_ROOT = Path(pytriton.__file__).resolve().parent / "tritonserver"
LIBS = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"


class TritonStartError(RuntimeError):
    pass


@dataclass
class TritonServer:
    pid: int
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    profile: str

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        """Until every thread has exited. A zombie (exited child not yet reaped) still answers kill(0),
        and a SIGKILLed server's main thread turns zombie while its other threads still tear down and
        hold its ports (~0.1 s here, longer on busy CI cores, where a restart then found them taken)."""
        try:
            os.kill(self.pid, 0)
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return False
        return any(_state(Path(f"/proc/{self.pid}/task/{tid}/stat")) not in ("Z", "X", None) for tid in tasks)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 60) -> None:
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)  # graceful: Triton finishes in-flight requests
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.2)
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        _reap(self.pid)


def _state(stat: Path) -> str | None:
    try:  # the command name in parentheses may hold spaces
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def backend_dir(run_dir: Path) -> Path:
    """A backends folder holding the python backend with the stub for this interpreter."""
    target = run_dir / "backends" / "python"
    stub = WHEEL_ROOT / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    if not stub.exists():
        raise TritonStartError(f"the pytriton wheel has no python backend stub for Python {sys.version}")
    target.mkdir(parents=True, exist_ok=True)
    sources = [*(WHEEL_ROOT / "backends" / "python").glob("*.so"),
               WHEEL_ROOT / "backends" / "python" / "triton_python_backend_utils.py",
               stub / "triton_python_backend_stub"]
    for src in sources:
        dst = target / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    return target.parent


def stage_process_env() -> dict[str, str]:
    """How the stage models' processes run torch and onnxruntime on the CPU: in the server's stubs,
    and in `restyle bench triton`'s in-process side."""
    return {
        # Several python models share few cores; one thread each avoids oversubscription.
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2)),
        # torch's CPU tensors on transparent huge pages: without, the same tiny generation took
        # 2.7 s in one process and 3.7 s in the next (page placement); with, 2.8-3.0 s.
        "THP_MEM_ALLOC_ENABLE": "1",
    }


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    libdirs = [str(LIBS), sysconfig.get_config_var("LIBDIR")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libdirs, env.get("LD_LIBRARY_PATH", "")]).strip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({name: env.get(name, value) for name, value in stage_process_env().items()})
    env.setdefault("YOLO_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _state_file(run_dir: Path) -> Path:
    return run_dir / "triton.json"


def check_ports(**ports: int) -> None:
    """Refuse before starting, naming the port: Triton itself would load every model first and
    only then fail to bind."""
    for name, port in ports.items():
        if port_in_use(port):
            raise TritonStartError(f"port {port} ({name.removesuffix('_port')}) is already in use: pass "
                                   f"--{name.replace('_', '-')} with a free port, or stop what listens there "
                                   "(`restyle triton stop` for a server this checkout started)")


def _cmdline(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def cleanup_leftovers(repository: Path) -> list[str]:
    """End python-backend stubs of this repository whose tritonserver is gone, and remove shared
    memory regions no process maps any more. A SIGKILLed tritonserver leaves both behind; a stub
    ignores SIGTERM and, on a GPU, keeps its memory. Returns what was done: a line per stub, one for
    the regions."""
    done, repo = [], str(Path(repository).resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        argv = _cmdline(pid)
        # stub argv: stub, model.py, shm region, shm sizes x2, the server's pid, ...
        if len(argv) > 5 and argv[0].endswith("triton_python_backend_stub") and argv[1].startswith(repo):
            server_pid = argv[5]
            if server_pid.isdigit() and "tritonserver" in " ".join(_cmdline(server_pid)[:1]):
                continue
            try:
                os.kill(int(pid), signal.SIGKILL)
                done.append(f"ended a leftover python-backend stub (pid {pid}, {Path(argv[1]).parent.parent.name})")
            except OSError:
                pass
    if done:
        time.sleep(0.2)  # let the kernel release what the killed stubs mapped
    mapped = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            mapped.update(line.rsplit(" ", 1)[-1].strip() for line in open(f"/proc/{pid}/maps")
                          if "/dev/shm/" in line)
        except OSError:
            continue
    removed = 0
    for region in Path("/dev/shm").glob("triton_python_backend_shm_region_*"):
        try:  # a region younger than a minute may belong to a server that is starting right now
            if str(region) not in mapped and time.time() - region.stat().st_mtime > 60:
                region.unlink()
                removed += 1
        except OSError:
            continue
    if removed:  # one line: every killed server leaves one region per model instance
        done.append(f"removed {removed} leftover shared memory region(s) /dev/shm/triton_python_backend_shm_region_*")
    return done


def _failure(log: Path) -> str:
    """The lines of the log that say why (Triton's error lines start with E and a date)."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if line[:1] == "E" and line[1:5].isdigit()]
    return "\n".join((errors or lines)[-8:])


def start(profile: str, http_port: int, grpc_port: int, metrics_port: int, *,
          repository: Path | None = None, run_dir: Path | None = None, timeout_s: float | None = None,
          on_wait=None) -> TritonServer:
    """Start tritonserver in its own session and return once every model is ready."""
    check_ports(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)
    settings = get_settings()
    repository = repository or settings.model_repository
    run_dir = run_dir or settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"triton-{http_port}.log"
    cmd = [str(WHEEL_ROOT / "bin" / "tritonserver"),
           f"--model-repository={repository}",
           f"--backend-directory={backend_dir(run_dir)}",
           f"--http-port={http_port}", f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}",
           "--exit-on-error=true", "--strict-readiness=true",
           # Images travel between python models through shared memory: start big enough
           # for a working-size image and grow in large steps.
           "--backend-config=python,shm-default-byte-size=33554432",
           "--backend-config=python,shm-growth-byte-size=16777216"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=server_env(),
                                start_new_session=True)
    server = TritonServer(proc.pid, settings.triton_host, http_port, grpc_port, metrics_port, log, profile)
    started = time.monotonic()
    deadline = started + (timeout_s or settings.triton_start_timeout_s)
    while not server.ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop(timeout_s=5)
            why = "exited" if proc.poll() is not None else (
                f"was not ready after {time.monotonic() - started:.0f} s (if it was still loading or, on a GPU, "
                "compiling, raise RESTYLE_TRITON_START_TIMEOUT_S)")
            raise TritonStartError(f"tritonserver {why}; the log ({log}) says:\n{_failure(log)}")
        if on_wait:
            on_wait(server)
        time.sleep(0.5)
    _state_file(run_dir).write_text(json.dumps({**server.__dict__, "log": str(log)}))
    return server


def current(run_dir: Path | None = None) -> TritonServer | None:
    """The server `restyle triton start` left running, if it still runs."""
    state = _state_file(run_dir or get_settings().run_dir)
    if not state.exists():
        return None
    data = json.loads(state.read_text())
    server = TritonServer(**{**data, "log": Path(data["log"])})
    return server if server.alive() else None


def stop_current(run_dir: Path | None = None) -> TritonServer | None:
    server = current(run_dir)
    if server:
        server.stop()
    _state_file(run_dir or get_settings().run_dir).unlink(missing_ok=True)
    return server


def model_states(server: TritonServer) -> dict[str, str]:
    """Model name -> state, from the repository index."""
    req = urllib.request.Request(f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return {m["name"]: m.get("state", "UNKNOWN") for m in json.loads(r.read())}


def ready_summary(server: TritonServer) -> str:
    """"7/13 models ready", or "starting" while the server does not answer yet."""
    try:
        states = model_states(server)
    except OSError:
        return "starting"
    return f"{sum(s == 'READY' for s in states.values())}/{len(states)} models ready"


def loading_reporter(emit, every_s: float = 10.0):
    """An on_wait for start(): emit(ready_summary) at most every every_s seconds (a minute of
    silence while models load reads as a hang)."""
    last = time.monotonic() - every_s

    def on_wait(server: TritonServer) -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            last = time.monotonic()
            emit(ready_summary(server))
    return on_wait
