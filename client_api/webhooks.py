"""Signed webhook delivery on terminal job states.

Signature: hex HMAC-SHA256 with RESTYLE_WEBHOOK_SECRET over f"{timestamp}.{body}", sent as
`X-Restyle-Timestamp` and `X-Restyle-Signature: sha256=<hex>`. Including the timestamp
lets receivers refuse replays (see verify()).

Only public hosts are called (unless RESTYLE_WEBHOOK_ALLOW_PRIVATE): the URL comes from
clients, and a webhook to 169.254.169.254 or 10.x would let them probe or call our
internal network (SSRF). resolve() checks at submit time and again before every delivery.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from urllib.parse import urlsplit

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


class WebhookRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# checked in this order, so 127.0.0.1 is named "loopback" rather than the broader "private"
_NOT_PUBLIC = (("unspecified", "is_unspecified"), ("loopback", "is_loopback"), ("link-local", "is_link_local"),
               ("multicast", "is_multicast"), ("private", "is_private"), ("reserved", "is_reserved"))


def address_problem(address: str) -> str | None:
    """Why this IP may not receive webhooks ("loopback", "private", ...); None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
    # ::ffff:10.0.0.1 and 2002:0a00:0001:: reach 10.0.0.1
    ip = getattr(ip, "ipv4_mapped", None) or getattr(ip, "sixtofour", None) or ip
    for name, attr in _NOT_PUBLIC:
        if getattr(ip, attr):
            return name
    return None if ip.is_global else "non-public"  # e.g. 100.64.0.0/10 (carrier-grade NAT)


def host_port(url: str) -> tuple[str, int]:
    """Host and port of an absolute http(s) URL; WebhookRefused otherwise."""
    try:  # ValueError: a broken [IPv6] host, a port that is not a number or out of range
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = port = None
    if not host or parts.scheme not in ("http", "https"):
        raise WebhookRefused("invalid_webhook_url", "webhook_url must be an absolute http(s) URL")
    return host, port


async def resolve(url: str, *, allow_private: bool, timeout_s: float) -> list[str]:
    """The addresses of `url`'s host, each one checked; WebhookRefused naming the problem otherwise."""
    host, port = host_port(url)
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s)
    except (OSError, UnicodeError, ValueError):  # no such host, DNS down or slow, not encodable
        raise WebhookRefused("webhook_url_unresolvable", f"webhook_url host '{host}' does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:  # every one: a client may be sent to any of them
            problem = address_problem(address)
            if problem:
                article = "an" if problem[0] in "aeiou" else "a"
                raise WebhookRefused("webhook_url_not_public",
                                     f"webhook_url host resolves to {article} {problem} address ({address}); "
                                     "webhooks must reach a public host")
    return addresses


def _pinned(url: str, address: str) -> tuple[str, str, str]:
    """`url` aimed at `address`, plus the Host header and TLS server name of the original host."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = f"[{address.split('%', 1)[0]}]" if ":" in address else address
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl(), hostport, parts.hostname


def _retryable(status: int) -> bool:
    # 4xx means the receiver rejected this payload; sending it again will not help,
    # except for "timeout" and "slow down".
    return status >= 500 or status in (408, 429)


async def deliver(url: str, payload: dict, *, secret: str, max_attempts: int, backoff_s: float,
                  backoff_max_s: float, timeout_s: float, allow_private: bool = False) -> bool:
    body = json.dumps(payload, separators=(",", ":")).encode()
    # Redirects are not followed: they would lead past the address check.
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        for attempt in range(1, max_attempts + 1):
            ts = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "restyle-webhooks/1",
                       "X-Restyle-Timestamp": ts, "X-Restyle-Signature": sign(secret, ts, body),
                       "X-Restyle-Attempt": str(attempt)}
            try:
                # Resolve and check now (DNS may have changed since submit), then connect to the
                # checked address itself: letting httpx look the name up again would leave a window
                # for a rebinding DNS server to answer 10.x the second time. TLS still verifies
                # the certificate against the URL's host (sni_hostname).
                addresses = await resolve(url, allow_private=allow_private, timeout_s=timeout_s)
                target, host, server_name = _pinned(url, addresses[0])
                resp = await client.post(target, content=body, headers={**headers, "Host": host},
                                         extensions={"sni_hostname": server_name})
                if resp.status_code < 300:
                    return True
                retry = _retryable(resp.status_code)
                reason = f"HTTP {resp.status_code}"
            except WebhookRefused as e:  # a non-public address stays refused; DNS may come back
                retry, reason = e.code == "webhook_url_unresolvable", e.message
            except httpx.HTTPError as e:
                retry, reason = True, type(e).__name__
            log.warning("webhook for job %s attempt %d failed: %s", payload.get("job_id"), attempt, reason)
            if not retry or attempt == max_attempts:
                return False
            await asyncio.sleep(min(backoff_max_s, backoff_s * 2 ** (attempt - 1)))
    return False
