"""Small helpers for what the CLI prints."""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 device``, ``2 devices``, ``0 devices``."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {word}"
