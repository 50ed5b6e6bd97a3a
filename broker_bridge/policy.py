"""The delivery policy's numbers, with the contract's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from tether.settings import float_or_none, setting


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    # commands not yet terminal, per device; beyond: queue_full
    pending_limit: int = setting(1000, help="pending commands per device before queue_full")
    # seconds without `received` while online, then publish again
    redelivery_after: float = setting(
        30.0, help="seconds without `received` before publishing again"
    )
    max_attempts: int = setting(10, help="publishes before `undeliverable`")
    # seconds from `delivered` to a final ack, else `timed_out`
    execution_timeout: float = setting(300.0, help="seconds from delivered to a final ack")
    # seconds; None: commands do not expire
    default_ttl: float | None = setting(
        None,
        parse=float_or_none,
        default_text="never",
        help="seconds before an undelivered command expires",
    )
    sweep_batch: int = 500  # due commands handled per shard per sweep

    def __post_init__(self) -> None:
        if self.pending_limit < 1 or self.max_attempts < 1:
            raise ValueError("pending_limit and max_attempts must be at least 1")
        if self.redelivery_after <= 0 or self.execution_timeout <= 0:
            raise ValueError("redelivery_after and execution_timeout must be positive")
