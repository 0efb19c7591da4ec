"""Cancelling a generation that runs in another model of the same tritonserver.

Triton 2.51 cannot cancel a BLS request, so when room_restyle_stream's own client cancels, it
raises a flag that diffusion_engine checks after every denoising step. A flag is an empty file
named by the generation's key, in a folder private to one server: both models are stubs started
by the same tritonserver process, so they share the parent pid.
"""
from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path

_KEY = re.compile(r"^[0-9a-f]{32}$")


class GenerationCancelled(Exception):
    """Raised from the per-step callback to leave the denoising loop at once."""


def new_key() -> str:
    return uuid.uuid4().hex


def _flag(key: str) -> Path:
    if not _KEY.match(key):
        raise ValueError("CANCEL_KEY must be 32 lowercase hex digits")
    return Path(tempfile.gettempdir()) / f"restyle-cancel-{os.getppid()}" / key


def cancel(key: str) -> None:
    flag = _flag(key)
    flag.parent.mkdir(mode=0o700, exist_ok=True)
    flag.touch()


def is_cancelled(key: str) -> bool:
    return _flag(key).exists()


def clear(key: str) -> None:
    _flag(key).unlink(missing_ok=True)
