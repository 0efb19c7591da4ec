"""perf_analyzer (the binary in the tritonclient 2.51.0 wheel), runnable as a Triton user calls it.

The binary links libcudart.so.12 even on CPU and Debian's libb64.so.0d; neither is on the
loader's path in a venv. `environment()` fixes the first (the pytriton wheel carries a
libcudart under another name: a link with the expected name suffices) and `check_libb64()`
turns a missing second into one line naming the package. Wrapping the wheel's own
`.venv/bin/perf_analyzer` was not done: any reinstall of tritonclient would undo it.
"""
import base64
import csv
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from restyle.server import LIBS
from restyle.settings import get_settings

LIBB64 = "libb64.so.0d"


class PerfAnalyzerMissing(RuntimeError):
    pass


def binary() -> Path:
    found = Path(sys.executable).parent / "perf_analyzer"
    if not found.exists() and not (found := Path(shutil.which("perf_analyzer") or "")).is_file():
        raise PerfAnalyzerMissing("perf_analyzer not found: `pip install tritonclient[all]==2.51.0` carries it")
    return found


def check_libb64() -> None:
    try:
        ctypes.CDLL(LIBB64)
    except OSError:
        raise PerfAnalyzerMissing(f"perf_analyzer needs {LIBB64}: apt-get install libb64-0d") from None


def library_dir() -> Path:
    """A folder holding `libcudart.so.12`, linked to the pytriton wheel's copy."""
    lib = get_settings().run_dir / "perf_analyzer_lib"
    lib.mkdir(parents=True, exist_ok=True)
    link = lib / "libcudart.so.12"
    if not link.exists():
        link.symlink_to(next(LIBS.glob("libcudart-*.so.12*")).resolve())
    return lib


def environment() -> dict[str, str]:
    check_libb64()
    path = [str(library_dir()), os.environ.get("LD_LIBRARY_PATH", "")]
    return dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(path).strip(os.pathsep))


def exec_(args: list[str]) -> None:
    """Become perf_analyzer with `args` (its output, signals and exit status are the caller's)."""
    path = str(binary())
    os.execve(path, [path, *args], environment())


def call(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """perf_analyzer with `args`, passed through unchanged."""
    return subprocess.run([str(binary()), *args], env=environment(), **kwargs)


def tensor_json(value: np.ndarray | list[str] | str, dims_without_batch: bool = False) -> dict:
    """One tensor of perf_analyzer's --input-data JSON: numbers as base64 of their raw bytes
    (a 3x320x320 float tensor as a list of numbers would be megabytes of text), strings as a list."""
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.dtype == np.object_) or isinstance(value, list):
        texts = [value] if isinstance(value, str) else [v.decode() if isinstance(v, bytes) else str(v)
                                                         for v in np.asarray(value, dtype=object).reshape(-1)]
        shape = [len(texts)] if isinstance(value, (str, list)) else list(value.shape)
        return {"content": texts, "shape": shape}
    array = np.ascontiguousarray(value)
    shape = list(array.shape[1:] if dims_without_batch else array.shape)
    if not array.size:  # perf_analyzer 2.51 crashes on an empty b64 string
        return {"content": [], "shape": shape}
    return {"b64": base64.b64encode(array.tobytes()).decode(), "shape": shape}


def measure(model: str, url: str, data: Path, csv_path: Path, *, concurrency: int, windows: int = 3,
            protocol: str = "grpc", timeout_s: float = 900, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """perf_analyzer's count_windows measurement of `model` at one concurrency: the verbose
    CSV's row (client latency percentiles in µs, throughput, server queue/compute split)."""
    # Seconds-long requests on a shared CPU never look "stable" window to window; a loose
    # stability bound makes perf_analyzer report the windows it measured instead of giving up.
    args = ["-m", model, "-u", url, "-i", protocol, "--input-data", str(data),
            "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
            "--measurement-request-count", str(windows), "--max-trials", "3", "--stability-percentage", "1000",
            "--verbose-csv", "-f", str(csv_path), *extra]
    done = call(args, check=False, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode:
        raise RuntimeError(f"perf_analyzer failed on {model} ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr}")
    with open(csv_path, newline="") as f:
        return next(csv.DictReader(f))
