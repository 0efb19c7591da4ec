"""API keys and job ownership.

Keys are compared as sha256 hashes and never stored or logged in plain; a job records
only a short owner id derived from the hash, so Redis does not hold usable credentials.
"""
from __future__ import annotations

import hmac

from .config import Settings, hash_key

ANONYMOUS = "anonymous"


def owner_of(key_hash: str) -> str:
    return "key_" + key_hash[:24]


def authenticate(settings: Settings, token: str | None) -> str | None:
    """The owner id for a bearer token, ANONYMOUS when no keys are configured, else None."""
    if settings.anonymous:
        return ANONYMOUS
    if not token:
        return None
    h = hash_key(token)
    admin = settings.admin_key_hash
    if admin and hmac.compare_digest(h, admin):
        return owner_of(h)
    # compare against every key (no early exit) so timing does not hint at a prefix match
    match = False
    for known in settings.api_key_hashes:
        match |= hmac.compare_digest(h, known)
    return owner_of(h) if match else None


def is_admin(settings: Settings, token: str | None) -> bool:
    if settings.anonymous:
        return True  # local use: one user, who is also the operator
    admin = settings.admin_key_hash
    return bool(admin and token and hmac.compare_digest(hash_key(token), admin))


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None
