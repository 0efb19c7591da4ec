"""perf_analyzer (from the tritonclient 2.51.0 wheel) against room_restyle, with a real photo as input."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from restyle.server import LIBS


def input_data(image: bytes, style: str, steps: int, seed: int) -> dict:
    # perf_analyzer's JSON: UINT8 tensors as lists of ints with an explicit shape.
    return {"data": [{"IMAGE_BYTES": {"content": list(image), "shape": [len(image)]},
                      "STYLE": [style], "STEPS": [steps], "SEED": [seed]}]}


def library_dir(work_dir: Path) -> Path:
    """perf_analyzer links libcudart.so.12 even on CPU; the pytriton wheel carries one under another name."""
    lib = work_dir / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    link = lib / "libcudart.so.12"
    if not link.exists():
        link.symlink_to(next(LIBS.glob("libcudart-*.so.12*")).resolve())
    return lib


def run(url: str, image: bytes, work_dir: Path, *, protocol: str = "http", style: str = "modern", steps: int = 4,
        seed: int = 1, concurrency: int = 1, windows: int = 3, timeout_s: int = 600) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "perf_analyzer"
    if not binary.exists() and not (binary := Path(shutil.which("perf_analyzer") or "")).exists():
        raise FileNotFoundError("perf_analyzer not found: `pip install tritonclient[all]==2.51.0` carries it")
    work_dir.mkdir(parents=True, exist_ok=True)
    data = work_dir / "input.json"
    data.write_text(json.dumps(input_data(image, style, steps, seed)))
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join([str(library_dir(work_dir)), os.environ.get("LD_LIBRARY_PATH", "")]))
    # Seconds-long requests on a shared CPU never look "stable" window to window; a loose
    # stability bound makes perf_analyzer report the windows it measured instead of giving up.
    cmd = [str(binary), "-m", "room_restyle", "-u", url, "-i", protocol, "--input-data", str(data),
           "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
           "--measurement-request-count", str(windows), "--max-trials", "3", "--stability-percentage", "1000",
           "-f", str(work_dir / "perf.csv")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
