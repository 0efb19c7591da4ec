"""`restyle models download` against a local mirror of the hub (tests/hub_mirror.py), then
`restyle models build --profile cpu --weights` from what it fetched, served by a real tritonserver.

The mirror's repositories hold the tiny random checkpoints in the released layouts and file
names, so the download, the build and the serving code are the ones real checkpoints go through;
what is not tested here is the real hub and the real checkpoints.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hub_mirror import HubMirror, YOLO_RELEASE_PATH, released_repos

from export import download as dl
from export.weights import PARTS, check_complete, select

RESTYLE = Path(sys.executable).parent / "restyle"
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    repos, yolo = released_repos(tmp_path_factory.mktemp("released"))
    with HubMirror(repos, yolo) as hub:
        yield hub


@pytest.fixture
def hub(mirror):
    mirror.reset()
    yield mirror
    mirror.reset()


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_home")


def restyle(mirror: HubMirror, hf_home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process: huggingface_hub reads HF_ENDPOINT when imported."""
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env = {**base, "HF_HOME": str(hf_home), "HF_ENDPOINT": mirror.url, "RESTYLE_YOLO_URL": mirror.yolo_url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200", **env}
    return subprocess.run([str(RESTYLE), *args], env=env, capture_output=True, text=True, timeout=600)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetched_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(root).parts}


def expected_files(parts=PARTS) -> set[str]:
    return {f"{p.folder}/{f}" for p in parts for f in p.files}


def source(mirror: HubMirror, folder: str, file: str) -> Path:
    part = next(p for p in PARTS if p.folder == folder)
    return mirror.yolo if part.repo is None else mirror.repos[part.repo].files[file]


@pytest.fixture(scope="module")
def downloaded(mirror, hf_home, tmp_path_factory):
    mirror.reset()
    root = tmp_path_factory.mktemp("weights")
    done = restyle(mirror, hf_home, "models", "download", "--dir", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    return root, done, list(mirror.requests)


# ----------------------------------------------------------------------------- the happy path

def test_download_fetches_exactly_the_layout(downloaded, mirror):
    root, done, requests = downloaded
    assert fetched_files(root) == expected_files()  # no .ckpt, non-EMA, fp16, .bin, safety checker, TF/Flax
    for rel in expected_files():
        folder, _, file = rel.partition("/")
        assert sha256(root / rel) == sha256(source(mirror, folder, file)), rel
    # the YOLO checkpoint came from RESTYLE_YOLO_URL, through the release's redirect
    assert ("GET", YOLO_RELEASE_PATH, None) in requests
    # LFS files came from the CDN host, small files straight from resolve/
    assert any(p.startswith("/cdn/") for _, p, _ in requests)
    assert f"next: restyle models build --profile t4 --weights {root}" in done.stdout
    check_complete(root)


def test_a_second_run_fetches_nothing(downloaded, hub, hf_home):
    root, _, _ = downloaded
    again = restyle(hub, hf_home, "models", "download", "--dir", str(root))
    assert again.returncode == 0, again.stderr
    assert hub.fetched() == []
    dry = restyle(hub, hf_home, "models", "download", "--dir", str(root), "--dry-run", "--only", "depth")
    assert "would fetch 0 files, 0 B" in dry.stdout and dry.stdout.count("present") == 3


def test_dry_run_lists_files_with_sizes_and_fetches_nothing(hub, hf_home, tmp_path):
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path / "w"), "--dry-run",
                   "--only", "controlnet,yolo")
    assert done.returncode == 0, done.stderr
    depth = hub.repos["lllyasviel/control_v11f1p_sd15_depth"].files["diffusion_pytorch_model.safetensors"]
    lines = done.stdout.splitlines()
    assert "controlnet: lllyasviel/control_v11f1p_sd15_depth -> " in lines[0]
    assert f"{dl.human_size(depth.stat().st_size):>10}  diffusion_pytorch_model.safetensors" in lines[2]
    assert any(line.startswith(f"yolo: {hub.yolo_url} -> ") for line in lines)
    assert lines[-1].startswith("would fetch 5 files, ")
    assert hub.fetched() == [] and fetched_files(tmp_path / "w") == set()


def test_build_from_the_downloaded_folder_serves_a_photo(downloaded, room_jpeg, tmp_path):
    """restyle models build --profile cpu --weights <downloaded> into a scratch artifacts folder and
    model repository (the tiny profile's, which other tests serve, stay untouched), then one photo
    through a real tritonserver."""
    from PIL import Image

    from restyle import server
    from restyle.client import RestyleRequest, TritonRestyleClient
    from restyle.server_ports import free_port

    root, _, _ = downloaded
    repository = tmp_path / "model_repository"
    code = subprocess.run(["git", "ls-files", "model_repository"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.split()
    for path in code:  # the committed model.py files; configs and .onnx come from the build
        dst = repository / Path(path).relative_to("model_repository")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, dst)
    env = {**os.environ, "RESTYLE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "RESTYLE_MODEL_REPOSITORY": str(repository)}
    built = subprocess.run([str(RESTYLE), "models", "build", "--profile", "cpu", "--weights", str(root)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    manifest = (tmp_path / "artifacts" / "cpu" / "manifest.json").read_text()
    assert str(root / "yolo" / "yolov8n.pt") in manifest and str(root / "dpt-large") in manifest
    assert (tmp_path / "artifacts" / "cpu" / "diffusion" / "sd").resolve() == root / "stable-diffusion-v1-5"

    srv = server.start("cpu", free_port(), free_port(), free_port(), repository=repository,
                       run_dir=tmp_path / "run", timeout_s=600)
    try:
        result = TritonRestyleClient(srv.grpc_url).infer(RestyleRequest(room_jpeg, "japandi", seed=1, steps=2))
    finally:
        srv.stop()
    image = Image.open(io.BytesIO(result.image_jpeg))
    assert image.format == "JPEG" and image.size == (640, 480)
    assert result.seed == 1 and 0 <= result.quality_score <= 1


# ----------------------------------------------------------------------------- resuming

def test_dropped_connections_resume_where_they_stopped(hub, hf_home, tmp_path):
    sam2 = "facebook/sam2.1-hiera-tiny/sam2.1_hiera_tiny.pt"
    # huggingface_hub writes 10 MiB chunks, so drop past two of them; YOLO's own loop writes 1 MiB
    hub.drop_after.update({sam2: 25_000_000, "yolov8n.pt": 3_000_000})
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path), "--only", "sam2,yolo")
    assert done.returncode == 0, done.stderr
    assert hub.drop_after == {}  # both connections were dropped
    ranges = [(p, r) for m, p, r in hub.requests if m == "GET" and r]
    assert any(p.startswith("/cdn/") and r == f"bytes={2 * 10 * 1024 * 1024}-" for p, r in ranges)
    assert ("/objects/yolov8n.pt", f"bytes={2 * 1024 * 1024}-") in ranges
    assert sha256(tmp_path / "sam2" / "sam2.1_hiera_tiny.pt") == sha256(hub.repos[sam2.rsplit("/", 1)[0]].files[
        "sam2.1_hiera_tiny.pt"])
    assert sha256(tmp_path / "yolo" / "yolov8n.pt") == sha256(hub.yolo)


def test_a_new_run_continues_the_yolo_file_an_interrupted_one_left(hub, hf_home, tmp_path):
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "yolov8n.pt.part").write_bytes(hub.yolo.read_bytes()[:1_000_000])
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path), "--only", "yolo")
    assert done.returncode == 0, done.stderr
    assert [r for m, p, r in hub.requests if m == "GET" and p == "/objects/yolov8n.pt"] == ["bytes=1000000-"]
    assert sha256(tmp_path / "yolo" / "yolov8n.pt") == sha256(hub.yolo)
    assert not (tmp_path / "yolo" / "yolov8n.pt.part").exists()


# ----------------------------------------------------------------------------- failures

def assert_clear_failure(done: subprocess.CompletedProcess, *fragments: str) -> str:
    out = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert done.returncode != 0
    assert "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in out, out
    return out


def test_a_missing_repository_is_named_with_what_to_do(hub, hf_home, tmp_path):
    hub.hidden.add("Intel/dpt-large")
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path), "--only", "clip,depth")
    assert_clear_failure(done, f"Intel/dpt-large not found at {hub.url}", "update export/weights.py",
                         f"restyle models download --dir {tmp_path} --only depth")


def test_a_gated_repository_needs_hf_token(hub, hf_home, tmp_path):
    hub.gated.add("stable-diffusion-v1-5/stable-diffusion-v1-5")
    args = ("models", "download", "--dir", str(tmp_path), "--only", "sd", "--dry-run")
    assert_clear_failure(restyle(hub, hf_home, *args), "is gated (HF_TOKEN is not set)",
                         f"{hub.url}/settings/tokens")
    assert_clear_failure(restyle(hub, hf_home, *args, HF_TOKEN="hf_wrong"), "the token in HF_TOKEN has no access")
    with_token = restyle(hub, hf_home, *args, HF_TOKEN=hub.token)
    assert with_token.returncode == 0 and "would fetch 13 files" in with_token.stdout


def test_no_network_says_so(hub, hf_home, tmp_path):
    from restyle.server_ports import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path), "--only", "lcm", HF_ENDPOINT=nowhere)
    assert_clear_failure(done, f"cannot reach {nowhere}", "HF_ENDPOINT")
    done = restyle(hub, hf_home, "models", "download", "--dir", str(tmp_path), "--only", "yolo",
                   RESTYLE_YOLO_URL=hub.url + "/ultralytics/assets/releases/download/v0/yolov8n.pt")
    assert_clear_failure(done, "answered 404", "RESTYLE_YOLO_URL")


def test_a_corrupted_file_is_caught_by_its_sha256_and_fetched_again(hub, hf_home, tmp_path):
    hub.corrupt.add("Intel/dpt-large/model.safetensors")
    args = ("models", "download", "--dir", str(tmp_path), "--only", "depth")
    assert_clear_failure(restyle(hub, hf_home, *args), "dpt-large/model.safetensors: sha256", "was deleted")
    assert not (tmp_path / "dpt-large" / "model.safetensors").exists()
    hub.corrupt.clear()
    assert restyle(hub, hf_home, *args).returncode == 0
    assert sha256(tmp_path / "dpt-large" / "model.safetensors") == sha256(
        hub.repos["Intel/dpt-large"].files["model.safetensors"])


def test_a_full_disk_is_refused_before_fetching(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    with pytest.raises(dl.DownloadError, match=r"has 1.0 kB free, the download needs .* MB"):
        dl.download(select(["sam2"]), tmp_path / "w", yolo_url=hub.yolo_url, endpoint=hub.url)
    assert hub.fetched() == []
    # and a disk that fills up while writing
    explained = dl._explained(select(["sam2"])[0], tmp_path, hub.url).explain(OSError(errno.ENOSPC, "full"))
    assert "is full" in explained and "--dir" in explained


# ----------------------------------------------------------------------------- the build's side

def test_build_refuses_an_incomplete_folder_naming_every_missing_part(tmp_path):
    root = tmp_path / "weights"
    for part in PARTS:
        for file in part.files:
            (part.path(root) / file).parent.mkdir(parents=True, exist_ok=True)
            (part.path(root) / file).touch()
    shutil.rmtree(root / "control_v11p_sd15_canny")
    (root / "stable-diffusion-v1-5" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    env = {**os.environ, "RESTYLE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "RESTYLE_MODEL_REPOSITORY": str(tmp_path / "repository")}
    done = subprocess.run([str(RESTYLE), "models", "build", "--profile", "cpu", "--weights", str(root)],
                          env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=300)
    out = assert_clear_failure(done, f"sd: {root}/stable-diffusion-v1-5/ lacks unet/diffusion_pytorch_model.safetensors",
                               f"controlnet: {root}/control_v11p_sd15_canny/ is missing",
                               f"restyle models download --dir {root} --only sd,controlnet")
    assert "clip" not in out and "depth" not in out
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "repository").exists()
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        check_complete(tmp_path / "nowhere")
