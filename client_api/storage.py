"""Object storage for uploads and results: S3-compatible (R2 in production) or a local folder.

Both stores share one small synchronous interface (boto3 is synchronous); async code calls
it through call(). Keys are always `uploads/{job_id}/...` or `results/{job_id}/...`,
so deleting a job's data and applying retention are prefix operations.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import quote, urlencode

from .config import Settings

# Only keys the service itself writes are valid; anything else is refused before
# touching the disk, which rules out path traversal through the /files route.
KEY_RE = re.compile(r"^(uploads|results)/[0-9a-f]{32}/[a-z_]{1,32}\.jpg$")


def original_key(job_id: str) -> str:
    return f"uploads/{job_id}/original.jpg"


def result_key(job_id: str) -> str:
    return f"results/{job_id}/transformed.jpg"


def thumbnail_key(job_id: str) -> str:
    return f"results/{job_id}/thumbnail.jpg"


def map_key(job_id: str, kind: str) -> str:
    """Where the worker keeps a map the pipeline made ("depth" or "edges"), beside the result."""
    return f"results/{job_id}/{kind}.jpg"


def job_prefixes(job_id: str) -> list[str]:
    return [f"uploads/{job_id}/", f"results/{job_id}/"]


T = TypeVar("T")


async def call(method: Callable[..., T], *args) -> T:
    """A store's method called from async code: on a thread where it blocks on the network (S3),
    else on the event loop. A local file's write or read is a page-cache copy; the hop to a
    thread and back cost more CPU than that (on 2 cores, 1-2 ms per submit, with GIL hand-offs
    that doubled the submit p99 at 8 in flight)."""
    if method.__self__.inline:
        return method(*args)
    return await asyncio.to_thread(method, *args)


class StorageError(Exception):
    """The store could not be reached or refused the operation (the API answers 503)."""


class NotFound(StorageError):
    pass


class Storage(Protocol):
    inline: bool  # its calls cost less than a hop to a thread: made on the event loop
    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def url(self, key: str, *, base_url: str, expires_s: int) -> str: ...
    def ready(self) -> bool: ...
    def apply_lifecycle(self, upload_days: int, result_days: int) -> dict: ...


class LocalStorage:
    """Files under a folder, served by the API at /files/{key} behind HMAC-signed expiring links."""

    inline = True

    def __init__(self, root: Path, secret: bytes):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = secret

    def _path(self, key: str) -> Path:
        if not KEY_RE.match(key):
            raise NotFound(key)
        return self.root / key

    def put(self, key, data, content_type="image/jpeg"):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(key) from e

    def delete_prefix(self, prefix):
        folder = self.root / prefix.rstrip("/")
        n = 0
        if folder.is_dir() and folder.resolve().is_relative_to(self.root):
            for f in folder.iterdir():
                f.unlink(missing_ok=True)
                n += 1
            folder.rmdir()
        return n

    def sign(self, key: str, exp: int) -> str:
        return hmac.new(self._secret, f"{key}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, exp: int, sig: str) -> bool:
        return hmac.compare_digest(self.sign(key, exp), sig) and exp >= time.time()

    def url(self, key, *, base_url, expires_s):
        exp = int(time.time()) + expires_s
        q = urlencode({"exp": exp, "sig": self.sign(key, exp)})
        return f"{base_url.rstrip('/')}/files/{quote(key)}?{q}"

    def ready(self):
        return os.access(self.root, os.W_OK)

    def apply_lifecycle(self, upload_days, result_days):
        """No bucket rules on a folder: sweep files older than their retention instead."""
        now = time.time()
        removed = {"uploads": 0, "results": 0}
        for top, days in (("uploads", upload_days), ("results", result_days)):
            base = self.root / top
            if not base.is_dir():
                continue
            for f in base.glob("*/*"):
                if now - f.stat().st_mtime > days * 86400:
                    f.unlink(missing_ok=True)
                    removed[top] += 1
            for d in base.iterdir():
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
        return removed


class S3Storage:
    """boto3 against any S3-compatible endpoint (Cloudflare R2, MinIO, moto)."""

    inline = False  # network round trips

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        s = settings
        self.bucket = s.s3_bucket
        self.cdn_domain = s.cdn_domain
        self.client = boto3.client(
            "s3",
            endpoint_url=s.s3_endpoint_url,
            aws_access_key_id=s.s3_access_key_id.get_secret_value() if s.s3_access_key_id else None,
            aws_secret_access_key=s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None,
            region_name=s.s3_region,
            # short timeouts and few retries: a dead store should answer 503 fast, not hang a request
            config=Config(signature_version="s3v4", connect_timeout=3, read_timeout=20,
                          retries={"max_attempts": 2, "mode": "standard"}),
        )
        self._errors = self._error_types()

    @staticmethod
    def _error_types():
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError)

    def _call(self, fn, **kw):
        try:
            return fn(Bucket=self.bucket, **kw)
        except self._errors as e:
            code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise NotFound(kw.get("Key", "")) from e
            raise StorageError(f"object storage error: {code or type(e).__name__}") from e

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (demo/tests); production buckets already exist."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors:
            self._call(self.client.create_bucket)

    def put(self, key, data, content_type="image/jpeg"):
        self._call(self.client.put_object, Key=key, Body=data, ContentType=content_type)

    def get(self, key):
        return self._call(self.client.get_object, Key=key)["Body"].read()

    def delete_prefix(self, prefix):
        listed = self._call(self.client.list_objects_v2, Prefix=prefix).get("Contents", [])
        if listed:
            self._call(self.client.delete_objects,
                       Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True})
        return len(listed)

    def url(self, key, *, base_url, expires_s):
        if self.cdn_domain and key.startswith("results/"):
            return f"https://{self.cdn_domain}/{quote(key)}"  # results are public through the CDN
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s)

    def ready(self):
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except self._errors:
            return False

    def lifecycle_rules(self, upload_days: int, result_days: int) -> list[dict]:
        return [
            {"ID": f"{top}-retention", "Status": "Enabled", "Filter": {"Prefix": f"{top}/"},
             "Expiration": {"Days": days}}
            for top, days in (("uploads", upload_days), ("results", result_days))
        ]

    def apply_lifecycle(self, upload_days, result_days):
        rules = self.lifecycle_rules(upload_days, result_days)
        self._call(self.client.put_bucket_lifecycle_configuration,
                   LifecycleConfiguration={"Rules": rules})
        return {"rules": rules}


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    secret = settings.signing_secret.get_secret_value().encode() if settings.signing_secret \
        else secrets.token_bytes(32)
    return LocalStorage(settings.local_storage_dir, secret)
