"""Signed webhook delivery on terminal job states.

Signature: hex HMAC-SHA256 with RESTYLE_WEBHOOK_SECRET over f"{timestamp}.{body}", sent as
`X-Restyle-Timestamp` and `X-Restyle-Signature: sha256=<hex>`. Including the timestamp
lets receivers refuse replays (see verify()).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

log = logging.getLogger("restyle.webhooks")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: int = 300) -> bool:
    """For receivers: signature valid and timestamp recent."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def _retryable(status: int) -> bool:
    # 4xx means the receiver rejected this payload; sending it again will not help,
    # except for "timeout" and "slow down".
    return status >= 500 or status in (408, 429)


async def deliver(url: str, payload: dict, *, secret: str, max_attempts: int, backoff_s: float,
                  backoff_max_s: float, timeout_s: float) -> bool:
    body = json.dumps(payload, separators=(",", ":")).encode()
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        for attempt in range(1, max_attempts + 1):
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "restyle-webhooks/1",
                       "X-Restyle-Timestamp": ts, "X-Restyle-Signature": sign(secret, ts, body),
                       "X-Restyle-Attempt": str(attempt)}
            try:
                resp = await client.post(url, content=body, headers=headers)
                if resp.status_code < 300:
                    return True
                retry = _retryable(resp.status_code)
                reason = f"HTTP {resp.status_code}"
            except httpx.HTTPError as e:
                retry, reason = True, type(e).__name__
            log.warning("webhook for job %s attempt %d failed: %s", payload.get("job_id"), attempt, reason)
            if not retry or attempt == max_attempts:
                return False
            await asyncio.sleep(min(backoff_max_s, backoff_s * 2 ** (attempt - 1)))
    return False
