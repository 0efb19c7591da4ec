"""All settings of the job service, read from the environment (prefix RESTYLE_).

One class so the API, the worker and the CLI agree on every value; the settings table
in README.md documents each variable.
"""
from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from restyle.contract import MAX_INPUT_PIXELS, MIN_INPUT_SIDE

_SHA256_HEX = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


def hash_key(plain: str) -> str:
    """sha256 hex of an API key: the only form in which keys are kept in memory."""
    return hashlib.sha256(plain.encode()).hexdigest()


def _split_csv(value):
    # Env vars carry lists as "a,b,c"; JSON lists would be awkward to write in a shell.
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESTYLE_", extra="ignore")

    # --- Redis (job state, queue, pub/sub, rate limit) ---
    redis_url: str = "redis://localhost:6379/0"
    redis_timeout_s: float = 2.0  # connect/socket timeout: an unreachable Redis must give a fast 503
    # Per process; a burst beyond it waits for a free connection rather than failing.
    redis_max_connections: int = Field(32, ge=1)
    # Live-event streams (SSE, WebSocket) get a keepalive this often; each watched job is re-read then.
    events_keepalive_s: float = Field(15.0, gt=0)
    queue_stream: str = "restyle:jobs"
    queue_group: str = "restyle-workers"

    # --- storage ---
    storage: Literal["local", "s3"] = "local"
    local_storage_dir: Path = Path(".run/storage")
    s3_endpoint_url: str | None = None
    s3_bucket: str = "restyle"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "auto"  # Cloudflare R2 wants "auto"
    cdn_domain: str | None = None  # public host for results/ (uploads stay private)
    signed_url_ttl_s: int = Field(3600, ge=10)
    public_base_url: str | None = None  # base of links the worker renders (webhooks); else the submit request's
    signing_secret: SecretStr | None = None  # HMAC key of local signed links; random per process when unset

    # --- security ---
    api_keys: Annotated[list[str], NoDecode] = []  # plain keys or sha256 hex ("sha256:<hex>" or bare 64 hex)
    admin_api_key: SecretStr | None = None
    rate_limit_per_minute: int = Field(30, ge=1)  # job submissions per key
    rate_limit_burst: int | None = None  # bucket size; defaults to rate_limit_per_minute
    cors_origins: Annotated[list[str], NoDecode] = []

    # --- uploads / jobs ---
    max_upload_bytes: int = 10 * 1024 * 1024
    # Stricter than the model server's limit if you like, never looser (restyle.contract).
    max_pixels: int = Field(MAX_INPUT_PIXELS, ge=MIN_INPUT_SIDE**2, le=MAX_INPUT_PIXELS)
    # Uploads are stored at most this long side; results come back at the stored size.
    working_max_side: int = Field(1024, ge=MIN_INPUT_SIDE)
    idempotency_ttl_s: int = 24 * 3600

    # --- Triton / worker ---
    triton_grpc_url: str = "localhost:8001"
    triton_timeout_s: float = 600
    # --- outages (Triton, storage, Redis unreachable): jobs wait, workers take no new work ---
    outage_deadline_s: float = Field(900, gt=0)  # longest a job waits for a dependency before it fails
    outage_backoff_s: float = Field(1.0, gt=0)  # readiness probes back off from this...
    outage_backoff_max_s: float = Field(15.0, gt=0)  # ...to this
    # a job in flight this many times when Triton went down is taken for the cause ("poison") and fails
    max_model_server_losses: int = Field(3, ge=1)
    worker_pipeline: str = "triton"  # or "module:callable" with TritonRestyleClient.restyle's signature
    worker_concurrency: int = Field(1, ge=1)
    visibility_timeout_s: float = Field(120, gt=0)  # an entry idle this long is taken by another worker
    max_deliveries: int = Field(3, ge=1)
    worker_metrics_port: int = Field(0, ge=0, le=65535)  # the worker's own Prometheus endpoint; 0 = off

    # --- retention ---
    upload_retention_days: int = Field(7, ge=1)
    result_retention_days: int = Field(30, ge=1)
    job_ttl_s: int | None = None  # Redis record lifetime; defaults to result retention

    # --- webhooks ---
    webhook_secret: SecretStr | None = None
    webhook_max_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = 1.0
    webhook_backoff_max_s: float = 60.0
    webhook_timeout_s: float = 10.0
    # Deliver to loopback/private/link-local hosts too: only for local receivers (tests, a dev box);
    # otherwise any client could make our servers POST into the internal network (SSRF).
    webhook_allow_private: bool = False

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, v):
        return _split_csv(v)

    @cached_property
    def api_key_hashes(self) -> frozenset[str]:
        out = set()
        for k in self.api_keys:
            m = _SHA256_HEX.match(k.lower())
            out.add(m.group(1) if m else hash_key(k))
        return frozenset(out)

    @property
    def admin_key_hash(self) -> str | None:
        return hash_key(self.admin_api_key.get_secret_value()) if self.admin_api_key else None

    @property
    def anonymous(self) -> bool:
        return not self.api_key_hashes and self.admin_api_key is None

    @property
    def job_ttl(self) -> int:
        return self.job_ttl_s or self.result_retention_days * 86400
