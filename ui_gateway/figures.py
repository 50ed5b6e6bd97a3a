"""``/api/fleet``: the fleet's counts from the store next to the command side's live figures."""

from __future__ import annotations

from typing import Any

from tether.protocol.service import CommandService


async def fleet_with_figures(service: CommandService) -> dict[str, Any]:
    fleet = await service.fleet()
    figures = await service.figures()
    return {
        **fleet,
        **figures.latency,
        "broker": {"connected": figures.broker_connected, **figures.broker},
        "bridge": figures.counters,
        "workers": figures.workers,
    }
