"""Generated secrets (passwords, tokens) that are safe everywhere they travel."""

from __future__ import annotations

import secrets


def new_secret(nbytes: int = 24) -> str:
    """Hex, never URL-safe base64: such a secret can start with '-', and a command line
    (``--password -x…``) then takes it for a flag."""
    return secrets.token_hex(nbytes)
