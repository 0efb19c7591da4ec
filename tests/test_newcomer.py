"""Newcomer mistakes, run as real subprocesses: each ends quickly with a non-zero exit, no traceback,
and a message that names the fix (issue: "every mistake gets one clear line")."""
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from restyle.samples import synthetic_room
from restyle.server_ports import free_port

RESTYLE = str(Path(sys.executable).parent / "restyle")


@pytest.fixture
def env(tmp_path):
    """Settings pointing at nothing: no recorded servers, ports where nothing listens."""
    return dict(os.environ, RESTYLE_RUN_DIR=str(tmp_path / "run"), RESTYLE_TRITON_HTTP_PORT=str(free_port()),
                RESTYLE_TRITON_GRPC_PORT=str(free_port()), RESTYLE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                RESTYLE_API_URL=f"http://127.0.0.1:{free_port()}", NO_COLOR="1", COLUMNS="200")


@pytest.fixture
def photo(tmp_path) -> Path:
    from restyle.imaging import encode_jpeg

    path = tmp_path / "room.jpg"
    path.write_bytes(encode_jpeg(synthetic_room(320, 240)))
    return path


def restyle(env, *args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([RESTYLE, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def assert_clear_failure(done: subprocess.CompletedProcess, *needles: str) -> None:
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "Traceback" not in text, text
    assert len(text.strip().splitlines()) <= 4, text
    for needle in needles:
        assert needle in text, text


def test_infer_with_nothing_listening(env, photo):
    assert_clear_failure(restyle(env, "infer", photo, "--style", "modern"),
                         "cannot reach tritonserver", "restyle triton start", "--url")


def test_infer_progress_with_nothing_listening(env, photo):
    assert_clear_failure(restyle(env, "infer", photo, "--style", "modern", "--progress"),
                         "cannot reach tritonserver", "over grpc", "restyle triton start")


def test_progress_over_http_is_refused(env, photo):
    assert_clear_failure(restyle(env, "infer", photo, "--style", "modern", "--progress", "--protocol", "http"),
                         "--progress streams over gRPC")


def test_unknown_style_is_refused_before_any_call(env, photo):
    assert_clear_failure(restyle(env, "infer", photo, "--style", "gothic"), "unknown style 'gothic'", "japandi")


def test_submit_with_nothing_listening(env, photo):
    assert_clear_failure(restyle(env, "submit", photo, "--style", "modern", "--wait"),
                         "cannot reach the job API", "restyle serve", "RESTYLE_API_URL")


def test_submit_to_something_that_is_not_the_api(env, photo):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = restyle(env, "submit", photo, "--style", "modern", "--api", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert_clear_failure(done, "is http://127.0.0.1", "the job API?", "8080")


def test_worker_without_redis(env):
    assert_clear_failure(restyle(env, "worker"), "cannot reach Redis", "redis-server", "RESTYLE_REDIS_URL")


def test_serve_with_an_unknown_profile(env):
    assert_clear_failure(restyle(env, "serve", "--profile", "foo"), "unknown profile 'foo'", "tiny")


def test_api_on_a_taken_port(env):
    with socket_listening() as port:
        assert_clear_failure(restyle(env, "api", "--port", port), f"port {port} is already in use", "--port")


def test_render_without_artifacts_writes_nothing(env, tmp_path):
    repo = tmp_path / "repo"
    env = dict(env, RESTYLE_ARTIFACTS_DIR=str(tmp_path / "artifacts"), RESTYLE_MODEL_REPOSITORY=str(repo))
    assert_clear_failure(restyle(env, "models", "render", "--profile", "cpu"),
                         "restyle models build --profile cpu", "nothing was rendered")
    assert not repo.exists() or not list(repo.rglob("config.pbtxt"))


class socket_listening:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def test_triton_start_on_a_taken_port_ends_leftovers_first(env, tmp_path, tiny_artifacts):
    """A crashed server's stub (it ignores SIGTERM) and its shared memory are cleaned up, said so,
    and a taken port is named at once instead of after loading every model."""
    repo = tmp_path / "repo"
    stub_model = repo / "fake" / "1" / "model.py"
    stub_model.parent.mkdir(parents=True)
    stub_model.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    region = Path("/dev/shm") / f"triton_python_backend_shm_region_test-{os.getpid()}"
    region.write_bytes(b"\0" * 16)
    os.utime(region, (time.time() - 600, time.time() - 600))
    # what a python-backend stub's command line looks like: stub, model.py, region, sizes, server pid, ...
    stub = subprocess.Popen([str(tmp_path / "triton_python_backend_stub"), str(stub_model), region.name,
                             "1", "1", str(dead.pid)], executable=sys.executable)
    env = dict(env, RESTYLE_MODEL_REPOSITORY=str(repo), RESTYLE_ARTIFACTS_DIR=str(tiny_artifacts.parent))
    try:
        with socket_listening() as port:
            started = time.monotonic()
            done = restyle(env, "triton", "start", "--http-port", port)
        assert_clear_failure(done, "ended a leftover python-backend stub", f"port {port} (http) is already in use",
                             "--http-port")
        assert time.monotonic() - started < 60
        assert stub.wait(timeout=10) == -signal.SIGKILL
        assert not region.exists()
    finally:
        stub.kill()
        region.unlink(missing_ok=True)


DEFAULT_SIGINT_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.argv[1], sys.argv[1:])")


def connected_to(pid: int, port: int, timeout: float = 120) -> None:
    import psutil

    deadline = time.monotonic() + timeout
    while not any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections()):
        assert time.monotonic() < deadline, f"process {pid} never connected to port {port}"
        time.sleep(0.1)


def test_ctrl_c_cancels_a_streaming_infer_at_once(triton_server, photo, env):
    # as from a terminal: a suite started in the background (`make test &`) passes SIGINT down ignored,
    # and Python then keeps it ignored; so the CLI is exec'd with SIGINT at its default
    proc = subprocess.Popen([sys.executable, "-c", DEFAULT_SIGINT_EXEC, RESTYLE, "infer", str(photo),
                             "--style", "modern", "--steps", "50", "--progress", "--url", triton_server.grpc_url,
                             "--out", str(photo.with_suffix(".out.jpg"))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # once it talks to the server (a loaded machine may take seconds to import the CLI), then somewhere
    # in the pipeline: between stages or inside the 50 steps, both cancel at once
    connected_to(proc.pid, triton_server.grpc_port)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert time.monotonic() - sent < 8, "Ctrl-C waited for the run to finish"
    assert "cancelled" in out and "Traceback" not in out
