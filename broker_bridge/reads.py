"""The read half of the command service: every query a client may make, over the shards.

Reads need no writer: any process that can open the shard files read-only can answer them,
next to the processes that write (see :class:`broker_bridge.store.sharded.StoreReader`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from broker_bridge.errors import NotFound, Unavailable
from broker_bridge.event_log import current_cursor
from broker_bridge.fleet_summary import fleet_summary
from broker_bridge.history import fleet_history
from broker_bridge.store.queries import (
    device_commands,
    device_events,
    get_command,
    get_device,
    list_devices,
)
from broker_bridge.store.sharded import StoreReader
from tether.protocol.cursor import Cursor
from tether.protocol.ids import COMMAND_ID_MAX_LENGTH
from tether.protocol.service import DeviceList, Record

STORE_CHECK_SECONDS = 5


class StoreReads:
    def __init__(self, reader: StoreReader) -> None:
        self.reader = reader

    async def devices(self, *, revoked: bool = False) -> DeviceList:
        results = await self.reader.fan_out(lambda c: list_devices(c, revoked=revoked))
        devices = sorted(
            (d for r in results if r.ok and r.value for d in r.value), key=lambda d: str(d["id"])
        )
        return DeviceList(devices, [r.status() for r in results])

    async def device(self, device_id: str) -> Record | None:
        return await self.reader.aread_device(
            device_id, lambda c: get_device(c, device_id, include_revoked=True)
        )

    async def commands(
        self, device_id: str, *, state: str | None, limit: int, before: str | None
    ) -> list[Record]:
        return await self.reader.aread_device(
            device_id,
            lambda c: device_commands(c, device_id, state=state, limit=limit, before=before),
        )

    async def device_events(
        self, device_id: str, kinds: tuple[str, ...], limit: int
    ) -> list[Record]:
        return await self.reader.aread_device(
            device_id, lambda c: device_events(c, device_id, kinds, limit)
        )

    async def command(self, command_id: str) -> Record:
        if len(command_id) > COMMAND_ID_MAX_LENGTH:
            raise NotFound("no such command")
        results = await self.reader.fan_out(lambda c: get_command(c, command_id))
        for result in results:
            if result.value is not None:
                return result.value
        failed = [r for r in results if not r.ok]
        if failed:
            raise Unavailable(f"shard {failed[0].shard} could not be read: {failed[0].error}")
        raise NotFound(f"no command {command_id!r}")

    async def fleet(self) -> dict[str, Any]:
        return await fleet_summary(self.reader)

    async def history(self, range_name: str) -> dict[str, Any]:
        return await fleet_history(self.reader, range_name)

    async def store_ok(self) -> bool:
        try:
            await asyncio.wait_for(
                self.reader.aread(0, lambda c: c.execute("SELECT 1").fetchone()),
                STORE_CHECK_SECONDS,
            )
        except Exception:
            return False
        return True

    def decode_cursor(self, text: str) -> Cursor:
        return Cursor.decode(text, self.reader.shard_count)

    async def current_cursor(self) -> Cursor:
        return await current_cursor(self.reader)
