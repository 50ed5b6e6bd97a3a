"""Which shard holds a device: ``blake2b(device_id) mod N``, stable across processes."""

from __future__ import annotations

import hashlib

HASH_NAME = "blake2b-64"


def shard_for(device_id: str, shard_count: int) -> int:
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    digest = hashlib.blake2b(device_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard_count
