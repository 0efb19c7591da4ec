"""`restyle models download`: the checkpoints into the layout of export/weights.py.

The hub side is huggingface_hub's own `snapshot_download`, restricted to each part's exact
file list and writing into the part's folder (`local_dir`). It reads HF_ENDPOINT and HF_TOKEN
itself, writes each file under a temporary name and renames it when whole, resumes a dropped
connection with a Range request, and on the next run skips files whose ETag (the sha256 for
LFS files) it already recorded. YOLOv8n is not on the hub: it comes from a GitHub release
(RESTYLE_YOLO_URL), into a `.part` file that a later run continues.

Every failure the user can act on becomes a DownloadError: one or two lines, what to do.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
from huggingface_hub import HfApi, RepoFile, constants, snapshot_download
from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RemoteEntryNotFoundError,
                                    RepositoryNotFoundError)
from tqdm.auto import tqdm

from export.weights import Part, download_command

URL_ATTEMPTS = 5


class DownloadError(Exception):
    """What failed and what to do about it, for the user (no traceback)."""


@dataclass(frozen=True)
class Planned:
    part: Part
    file: str
    size: int | None  # bytes, when the server says
    present: bool  # already complete here: not fetched again
    source: str  # hub repository or URL
    commit: str | None = None  # the hub commit the listing came from: the download fetches that one


def plan(parts: list[Part], root: Path, *, yolo_url: str, endpoint: str | None = None) -> list[Planned]:
    """What a download would fetch, file by file: asks the servers, fetches no file (huggingface_hub
    still makes its .cache/huggingface/ bookkeeping folder in each part)."""
    out = []
    for part in parts:
        with _explained(part, root, _endpoint(endpoint) if part.repo else yolo_url):
            out += _plan_hub(part, root, endpoint) if part.repo else [_plan_url(part, root, yolo_url)]
    return out


def download(parts: list[Part], root: Path, *, yolo_url: str, endpoint: str | None = None) -> None:
    """Fetch every part that is not complete; afterwards each one is, or a DownloadError says why."""
    root = Path(root)
    todo = plan(parts, root, yolo_url=yolo_url, endpoint=endpoint)
    _check_space(root, todo)
    for part in parts:
        fetched = [p for p in todo if p.part is part and not p.present]
        if not fetched:
            continue
        with _explained(part, root, _endpoint(endpoint) if part.repo else yolo_url):
            if part.repo:
                commit = fetched[0].commit
                snapshot_download(part.repo, revision=commit, local_dir=part.path(root),
                                  allow_patterns=list(part.files), endpoint=endpoint)
                _verify(part, root, commit, [p.file for p in fetched], endpoint)
            else:
                _fetch_url(yolo_url, part.path(root) / part.files[0])
        missing = part.missing(root)
        if missing:  # snapshot_download falls back to what is on disk when the hub drops out
            raise DownloadError(f"{part.folder}: {', '.join(missing)} still missing after the download; "
                                f"check the connection and run again: {download_command(root, [part])}")


# ------------------------------------------------------------------------------- hub

class _NoBar(tqdm):
    """The dry run's per-file HEAD calls are not worth a progress bar."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "disable": True})


def _plan_hub(part: Part, root: Path, endpoint: str | None) -> list[Planned]:
    infos = snapshot_download(part.repo, local_dir=part.path(root), allow_patterns=list(part.files),
                              endpoint=endpoint, dry_run=True, tqdm_class=_NoBar)
    absent = sorted(set(part.files) - {i.filename for i in infos})
    if absent:
        raise DownloadError(f"{part.repo} at {_endpoint(endpoint)} has no {', '.join(absent)}: the repository "
                            f"changed; see {_endpoint(endpoint)}/{part.repo} and update export/weights.py")
    return [Planned(part, i.filename, i.file_size, not i.will_download, part.repo, i.commit_hash)
            for i in sorted(infos, key=lambda i: part.files.index(i.filename))]


def _verify(part: Part, root: Path, commit: str, fetched: list[str], endpoint: str | None) -> None:
    """sha256 of every LFS file fetched now against the hub's listing; a bad file is deleted."""
    tree = HfApi(endpoint=endpoint).list_repo_tree(part.repo, revision=commit, recursive=True)
    expected = {f.path: f.lfs.sha256 for f in tree if isinstance(f, RepoFile) and f.lfs}
    for name in fetched:
        if name not in expected:
            continue  # a small git file: the hub publishes no sha256 for it
        path = part.path(root) / name
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if actual != expected[name]:
            path.unlink()
            raise DownloadError(f"{path}: sha256 {actual[:12]}… is not the hub's {expected[name][:12]}…; the file "
                                f"was deleted: run again, and if it repeats check proxies/mirrors in between")


# ------------------------------------------------------------------------------- URL (YOLOv8n)

def _plan_url(part: Part, root: Path, url: str) -> Planned:
    dst = part.path(root) / part.files[0]
    if dst.is_file():
        return Planned(part, part.files[0], dst.stat().st_size, True, url)
    r = httpx.head(url, follow_redirects=True, timeout=30)
    r.raise_for_status()
    size = r.headers.get("Content-Length")
    return Planned(part, part.files[0], int(size) if size else None, False, url)


def _fetch_url(url: str, dst: Path) -> None:
    """GET into dst.part, continuing what an earlier run or a dropped connection left there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".part")
    for attempt in range(1, URL_ATTEMPTS + 1):
        try:
            total = _get_rest(url, partial)
            break
        except httpx.TransportError:
            if attempt == URL_ATTEMPTS:
                raise
            time.sleep(1)
    if total is not None and partial.stat().st_size != total:
        raise DownloadError(f"{url} sent {partial.stat().st_size} of {total} bytes: run again to continue")
    partial.rename(dst)


def _get_rest(url: str, partial: Path) -> int | None:
    """Append to `partial` what it lacks (all of it if the server ignores the Range); the file's full size."""
    have = partial.stat().st_size if partial.exists() else 0
    with httpx.stream("GET", url, headers={"Range": f"bytes={have}-"} if have else {},
                      follow_redirects=True, timeout=30) as r:
        r.raise_for_status()
        if r.status_code != 206:
            have = 0
        length = r.headers.get("Content-Length")
        total = have + int(length) if length else None
        with open(partial, "ab" if have else "wb") as f, \
                tqdm(desc=partial.stem, total=total, initial=have, unit="B", unit_scale=True) as bar:
            for chunk in r.iter_bytes(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    return total


# ------------------------------------------------------------------------------- errors

def _endpoint(endpoint: str | None) -> str:
    return (endpoint or constants.ENDPOINT).rstrip("/")


def _check_space(root: Path, todo: list[Planned]) -> None:
    need = sum(p.size or 0 for p in todo if not p.present)
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise DownloadError(f"{existing} has {human_size(free)} free, the download needs {human_size(need)}: "
                            "free some space or pass --dir on a bigger disk")


class _explained:
    """Turn the failures a user can act on into a DownloadError: the part, the fix, the command to rerun."""

    def __init__(self, part: Part, root: Path, source: str):
        self.part, self.root, self.source = part, root, source  # source: the hub endpoint or the URL

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, DownloadError):
            return False
        message = next(filter(None, map(self.explain, _chain(exc))), None)
        if message is None:
            return False
        raise DownloadError(f"{self.part.folder}: {message}\n"
                            f"then run again (finished files are kept): {download_command(self.root, [self.part])}"
                            ) from exc

    def explain(self, e: BaseException) -> str | None:
        repo, hub = self.part.repo, self.source
        if isinstance(e, GatedRepoError):
            why = "the token in HF_TOKEN has no access" if os.environ.get("HF_TOKEN") else "HF_TOKEN is not set"
            return (f"{repo} is gated ({why}): accept its terms at {hub}/{repo} while logged in, "
                    f"then export HF_TOKEN=<a read token from {hub}/settings/tokens>")
        if isinstance(e, RepositoryNotFoundError):
            return (f"{repo} not found at {hub} (renamed, removed, or private and HF_TOKEN not allowed): "
                    f"check {hub}/{repo}; if it moved, update export/weights.py")
        if isinstance(e, RemoteEntryNotFoundError):
            return f"{e.response.url} is gone (404): the repository changed; update export/weights.py"
        if isinstance(e, HfHubHTTPError) and e.response.status_code == 401:
            return f"{hub} refused HF_TOKEN (401): create a new read token at {hub}/settings/tokens"
        if isinstance(e, HfHubHTTPError):
            return f"{hub} answered {e.response.status_code} for {e.response.url}: try again later"
        if isinstance(e, httpx.HTTPStatusError):
            return (f"{self.source} answered {e.response.status_code}: if the release moved, set "
                    "RESTYLE_YOLO_URL to the yolov8n.pt asset of a current ultralytics/assets release")
        if isinstance(e, OfflineModeIsEnabled):
            return "HF_HUB_OFFLINE is set: unset it to download"
        if isinstance(e, (httpx2.TransportError, httpx.TransportError)):
            other = "HF_ENDPOINT to a reachable hub mirror" if repo else "RESTYLE_YOLO_URL to a reachable copy"
            return f"cannot reach {self.source} ({type(e).__name__}: {e}); check the network or proxy, or set {other}"
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return f"the disk under {self.root} is full: free some space or pass --dir on a bigger disk"
        return None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
