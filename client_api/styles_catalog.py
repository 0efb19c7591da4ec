"""The style list, from restyle.styles (the one place styles are defined)."""
from __future__ import annotations

from .errors import AppError


def styles() -> dict:
    from restyle.styles import STYLES

    return STYLES


def check_style(name: str) -> None:
    known = styles()
    if name not in known:
        raise AppError(422, "unknown_style", f"unknown style '{name}'; choose one of: {', '.join(known)}")


def display_name(name: str) -> str:
    return name.replace("_", " ").title()
