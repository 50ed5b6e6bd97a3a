"""The delivery policy's numbers, with the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    pending_limit: int = 1000  # commands not yet terminal, per device; beyond: queue_full
    redelivery_after: float = 30.0  # seconds without `received` while online, then publish again
    max_attempts: int = 10  # publishes before `undeliverable`
    execution_timeout: float = 300.0  # seconds from `delivered` to a final ack, else `timed_out`
    default_ttl: float | None = None  # seconds; None: commands do not expire
    sweep_batch: int = 500  # due commands handled per shard per sweep

    def __post_init__(self) -> None:
        if self.pending_limit < 1 or self.max_attempts < 1:
            raise ValueError("pending_limit and max_attempts must be at least 1")
        if self.redelivery_after <= 0 or self.execution_timeout <= 0:
            raise ValueError("redelivery_after and execution_timeout must be positive")
