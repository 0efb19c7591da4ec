"""A local stand-in for the Hugging Face hub and a GitHub release, for tests (no network here).

`released_repos` writes the repositories the downloader fetches, in their released layouts
and file names, from the tiny random checkpoints the tiny build makes; beside the files the
downloader takes, each holds the ones it must leave alone (.ckpt, non-EMA, fp16, .bin,
safety checker, TF/Flax weights). `HubMirror` serves them over the routes huggingface_hub
2.x calls (read from its source):

  GET  /api/models/{repo}[/revision/{rev}]        model info: `sha` (the commit), siblings
  GET  /api/models/{repo}/tree/{rev}?recursive=.. files with `oid` (git blob sha1), `size`,
                                                  and `lfs: {oid: sha256, size}` for LFS files
  HEAD/GET /{repo}/resolve/{rev}/{path}           small files: 200, ETag = blob sha1,
                                                  X-Repo-Commit, Content-Length; LFS files:
                                                  302 to the CDN with X-Linked-Etag = sha256,
                                                  X-Linked-Size, X-Repo-Commit
  GET  http://localhost:{port}/cdn/{sha256}       the blob; Range -> 206 (resume)

Errors carry the hub's X-Error-Code (RepoNotFound with 401, GatedRepo, EntryNotFound,
RevisionNotFound), which huggingface_hub turns into its exception classes. The CDN answers
on `localhost` while the API is on `127.0.0.1`, so, as with the real CDN, the client takes the
file's metadata from the 302 itself and sends no Authorization header there. The GitHub
release URL redirects to /objects/ the way github.com redirects to its object store.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".h5", ".msgpack", ".png")
YOLO_RELEASE_PATH = "/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt"
SPECIAL_TOKENS_MAP = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                      "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
SD15_MODEL_INDEX = {  # stable-diffusion-v1-5/stable-diffusion-v1-5's, as released
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"]}


# ----------------------------------------------------------------------------- released layouts

def _decoys(repo: Path, *names: str) -> None:
    for name in names:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(b"must not be downloaded " * 64)


def released_sd(tiny_sd: Path, repo: Path) -> None:
    """The tiny SD pipeline folder as stable-diffusion-v1-5 publishes it: the released
    model_index.json (safety checker, feature extractor), tokenizer files without tokenizer.json."""
    from transformers import CLIPImageProcessor

    shutil.copytree(tiny_sd, repo, dirs_exist_ok=True)
    (repo / "model_index.json").write_text(json.dumps(SD15_MODEL_INDEX, indent=2))
    (repo / "tokenizer" / "tokenizer.json").unlink(missing_ok=True)
    (repo / "tokenizer" / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP))
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(
        repo / "feature_extractor")


def released_repos(out: Path, *, seed: int = 0) -> tuple[dict[str, Path], Path]:
    """{hub repo id: folder} in the released layouts, and the yolov8n.pt of the GitHub release.

    The cpu profile serves them: the DPT is the tiny config at DPT-Large's 384 input, YOLOv8n
    the real (random) architecture; everything else is the tiny build's."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer, DPTForDepthEstimation, DPTImageProcessor

    from export import vision
    from export.diffusion import build_diffusion
    from export.tokenizer import write_tiny_clip_tokenizer

    tiny = out / "tiny-build"
    build_diffusion(tiny, weights=None, size="tiny", seed=seed)
    vision.build_segmentation(tiny, weights=None, size="tiny", seed=seed)
    vision.build_room_classifier(tiny, weights=None, size="tiny", seed=seed)
    repos = {name: out / "hub" / name for name in (
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11f1p_sd15_depth",
        "lllyasviel/control_v11p_sd15_canny", "Intel/dpt-large", "openai/clip-vit-base-patch32",
        "facebook/sam2.1-hiera-tiny", "latent-consistency/lcm-lora-sdv1-5")}
    for repo in repos.values():
        repo.mkdir(parents=True)
        _decoys(repo, "README.md", ".gitattributes")

    sd = repos["stable-diffusion-v1-5/stable-diffusion-v1-5"]
    released_sd(tiny / "diffusion" / "sd", sd)
    _decoys(sd, "v1-5-pruned-emaonly.ckpt", "v1-5-pruned.safetensors", "unet/diffusion_pytorch_model.bin",
            "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
            "text_encoder/pytorch_model.bin", "safety_checker/config.json", "safety_checker/model.safetensors")
    for kind in ("depth", "canny"):
        repo = repos[f"lllyasviel/control_v11{'f1' if kind == 'depth' else ''}p_sd15_{kind}"]
        shutil.copytree(tiny / "diffusion" / f"controlnet_{kind}", repo, dirs_exist_ok=True)
        _decoys(repo, "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "images/input.png")

    config = vision.dpt_config("tiny")
    config.image_size = 384  # the cpu/t4 profiles' depth input
    torch.manual_seed(seed)
    DPTForDepthEstimation(config).save_pretrained(repos["Intel/dpt-large"])
    DPTImageProcessor(size={"height": 384, "width": 384}).save_pretrained(repos["Intel/dpt-large"])
    _decoys(repos["Intel/dpt-large"], "pytorch_model.bin")

    clip, tiny_clip = repos["openai/clip-vit-base-patch32"], tiny / "room_classifier"
    model = CLIPModel.from_pretrained(tiny_clip)
    model.config.save_pretrained(clip)
    torch.save(model.state_dict(), clip / "pytorch_model.bin")  # the repository's only PyTorch weights
    CLIPImageProcessor.from_pretrained(tiny_clip).save_pretrained(clip)
    CLIPTokenizer.from_pretrained(tiny_clip).save_pretrained(clip)  # tokenizer.json
    write_tiny_clip_tokenizer(clip)  # vocab.json, merges.txt, tokenizer_config.json
    (clip / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP))
    _decoys(clip, "tf_model.h5", "flax_model.msgpack")

    shutil.copy2(tiny / "segmentation" / "sam2.pt", repos["facebook/sam2.1-hiera-tiny"] / "sam2.1_hiera_tiny.pt")
    shutil.copy2(tiny / "diffusion" / "lcm_lora" / "pytorch_lora_weights.safetensors",
                 repos["latent-consistency/lcm-lora-sdv1-5"])
    yolo = out / "github" / "yolov8n.pt"
    yolo.parent.mkdir()
    vision.load_yolo(weights=None, seed=seed).save(str(yolo))
    shutil.rmtree(tiny)
    return repos, yolo


# ----------------------------------------------------------------------------- the server

def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, repo_id: str, folder: Path):
        self.id = repo_id
        self.commit = hashlib.sha1(repo_id.encode()).hexdigest()
        self.files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        self.lfs = {name: hashlib.sha256(p.read_bytes()).hexdigest()
                    for name, p in self.files.items() if name.endswith(LFS_SUFFIXES)}

    def tree(self) -> list[dict]:
        folders = sorted({str(Path(n).parent) for n in self.files} - {"."})
        out = [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
               for d in folders]
        for name, path in self.files.items():
            data = path.read_bytes()
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
            if name in self.lfs:
                entry["lfs"] = {"oid": self.lfs[name], "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out


class HubMirror:
    """The hub's download routes over `repos`, plus the YOLO release; faults can be switched on.

    gated: repos that answer GatedRepo without `Authorization: Bearer {token}`;
    hidden: repos that answer RepoNotFound (renamed or removed);
    drop_after: {"{repo}/{path}" or "yolov8n.pt": n} drops the connection after n bytes of it, once;
    corrupt: "{repo}/{path}" names whose bytes are served with one flipped;
    requests: (method, path, Range header) of everything asked."""

    token = "hf_mirror_token"

    def __init__(self, repos: dict[str, Path], yolo: Path):
        self.repos = {repo_id: _Repo(repo_id, folder) for repo_id, folder in repos.items()}
        self.blobs = {sha: (f"{r.id}/{name}", r.files[name]) for r in self.repos.values() for name, sha in r.lfs.items()}
        self.yolo = yolo
        self.gated: set[str] = set()
        self.hidden: set[str] = set()
        self.drop_after: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.yolo_url = self.url + YOLO_RELEASE_PATH

    def __enter__(self) -> HubMirror:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        for faults in (self.gated, self.hidden, self.drop_after, self.corrupt, self.requests):
            faults.clear()

    def fetched(self) -> list[str]:
        """Paths of the file bodies sent (GETs of small files, CDN blobs, the YOLO object)."""
        return [p for m, p, _ in self.requests if m == "GET" and ("/resolve/" in p or p.startswith(("/cdn/", "/objects/")))]


def _handler(mirror: HubMirror):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_HEAD(self):
            self._route(body=False)

        def do_GET(self):
            self._route(body=True)

        # --------------------------------------------------------------- routing
        def _route(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            mirror.requests.append((self.command, path, self.headers.get("Range")))
            if path.startswith("/api/models/"):
                return self._api(path.removeprefix("/api/models/"))
            if "/resolve/" in path:
                repo_id, rest = path.lstrip("/").split("/resolve/", 1)
                rev, _, name = rest.partition("/")
                return self._resolve(repo_id, rev, name, body)
            if path.startswith("/cdn/"):
                if path.removeprefix("/cdn/") not in mirror.blobs:
                    return self._error(404)
                name, blob = mirror.blobs[path.removeprefix("/cdn/")]
                return self._file(blob, body, name=name)
            if path == YOLO_RELEASE_PATH:
                return self._send(302, headers={"Location": "/objects/yolov8n.pt"})
            if path == "/objects/yolov8n.pt" and mirror.yolo.is_file():
                return self._file(mirror.yolo, body, name="yolov8n.pt")
            self._error(404)

        def _repo(self, repo_id: str):
            repo = mirror.repos.get(repo_id)
            if repo is None or repo_id in mirror.hidden:
                # what the hub answers for a missing (or private) repository
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            return repo

        def _api(self, rest: str) -> None:
            parts = rest.split("/")
            repo = self._repo("/".join(parts[:2]))
            if repo is None:
                return
            if len(parts) == 2 or parts[2] == "revision":
                if len(parts) > 3 and parts[3] not in ("main", repo.commit):
                    return self._error(404, "RevisionNotFound", "Invalid rev id")
                info = {"_id": repo.commit[:24], "id": repo.id, "modelId": repo.id, "sha": repo.commit,
                        "private": False, "disabled": False, "gated": "manual" if repo.id in mirror.gated else False,
                        "downloads": 0, "likes": 0, "tags": [], "siblings": [{"rfilename": n} for n in repo.files]}
                return self._json(info)
            if parts[2] == "tree":
                return self._json(repo.tree())
            self._error(404)

        def _resolve(self, repo_id: str, rev: str, name: str, body: bool) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            if repo_id in mirror.gated and self.headers.get("Authorization") != f"Bearer {mirror.token}":
                return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
            if rev not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            commit = {"X-Repo-Commit": repo.commit}
            if name not in repo.files:
                return self._error(404, "EntryNotFound", "Entry not found", commit)
            if name in repo.lfs:
                sha = repo.lfs[name]
                return self._send(302, headers={
                    **commit, "Location": f"http://localhost:{mirror.port}/cdn/{sha}",
                    "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(repo.files[name].stat().st_size),
                    "ETag": f'"{git_blob_sha1(repo.files[name].read_bytes())}"'})
            data = repo.files[name].read_bytes()
            self._file(repo.files[name], body, name=f"{repo_id}/{name}",
                       headers={**commit, "ETag": f'"{git_blob_sha1(data)}"'})

        # --------------------------------------------------------------- responses
        def _file(self, path: Path, body: bool, *, name: str, headers: dict | None = None) -> None:
            data = path.read_bytes()
            if name in mirror.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start, status = 0, 200
            range_ = self.headers.get("Range")
            if range_ and range_.startswith("bytes="):
                start, status = int(range_.removeprefix("bytes=").split("-")[0]), 206
                headers = {**(headers or {}), "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            rest = data[start:]
            self.send_response(status)
            for key, value in {**(headers or {}), "Accept-Ranges": "bytes", "Content-Length": str(len(rest))}.items():
                self.send_header(key, value)
            self.end_headers()
            if not body:
                return
            cut = mirror.drop_after.pop(name, None) if self.command == "GET" else None
            if cut is not None:  # a dropped connection halfway: part of the body, then nothing
                self.wfile.write(rest[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(rest)

        def _json(self, payload) -> None:
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str | None = None, message: str = "", extra: dict | None = None):
            headers = {**(extra or {}), **({"X-Error-Code": code, "X-Error-Message": message} if code else {})}
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _send(self, status: int, data: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for key, value in {**(headers or {}), "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler
