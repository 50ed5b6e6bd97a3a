"""Bearer tokens with roles: viewer < operator < admin. Tokens come from a file and the env."""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ui_gateway.errors import Forbidden, Unauthorized


class Role(enum.IntEnum):
    VIEWER = 1  # read and stream
    OPERATOR = 2  # + send and cancel
    ADMIN = 3  # + provision and revoke devices

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}: use viewer, operator or admin") from None


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def require(self, role: Role) -> None:
        if self.role < role:
            raise Forbidden(
                f"this needs the {role.name.lower()} role; you are {self.role.name.lower()}"
            )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """Tokens are kept only as SHA-256 digests, and looked up by digest."""

    def __init__(self, entries: Mapping[str, Principal] | None = None) -> None:
        self._by_digest = {_digest(token): who for token, who in (entries or {}).items()}

    def add(self, token: str, name: str, role: Role) -> None:
        if len(token) < 16:
            raise ValueError(f"token for {name!r} is too short: use at least 16 characters")
        self._by_digest[_digest(token)] = Principal(name, role)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("a valid bearer token is required")
        who = self._by_digest.get(_digest(token))
        if who is None:
            raise Unauthorized("unknown or revoked token")
        return who

    @classmethod
    def load(cls, path: Path | None = None, env: Mapping[str, str] = os.environ) -> TokenTable:
        """``{"tokens": [{"token", "role", "name"?}]}`` from a file, plus ``TETHER_ADMIN_TOKEN``."""
        table = cls()
        if path is not None:
            try:
                document = json.loads(path.read_text())
                for i, entry in enumerate(document["tokens"]):
                    table.add(
                        entry["token"], entry.get("name", f"token-{i}"), Role.parse(entry["role"])
                    )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"cannot read tokens from {path}: {exc}") from exc
        admin = env.get("TETHER_ADMIN_TOKEN")
        if admin:
            table.add(admin, "admin (TETHER_ADMIN_TOKEN)", Role.ADMIN)
        return table


def bearer_token(
    headers: Mapping[str, str], query: Mapping[str, str], allow_query: bool
) -> str | None:
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return query.get("token") or None
    return None


__all__ = ["Principal", "Role", "TokenTable", "bearer_token"]
