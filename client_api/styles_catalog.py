"""The style list, from restyle.styles (the one place styles are defined)."""
from __future__ import annotations

from .errors import AppError


def styles() -> dict:
    from restyle.styles import STYLES

    return STYLES


def check_style(name: str) -> str:
    """The canonical style name ('Mid Century Modern' -> 'mid-century-modern') or a 422."""
    from restyle.styles import normalize_style

    key = normalize_style(name)
    if key not in styles():
        raise AppError(422, "unknown_style", f"unknown style '{name}'; choose one of: {', '.join(styles())}")
    return key


def display_name(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").title()
