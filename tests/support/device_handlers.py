"""Handlers for agents run as a subprocess (``--handlers tests.support.device_handlers:install``).

Each run of a handler appends one line to the file named by ``TETHER_TEST_MARKER``, so a test
can count how many times a command really ran, across process crashes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from devices.agent import DeviceAgent

_forever = threading.Event()


def _mark(what: str) -> int:
    """Append a line for ``what`` and return how many lines for it the file now holds."""
    marker = Path(os.environ["TETHER_TEST_MARKER"])
    with marker.open("a") as out:
        out.write(what + "\n")
        out.flush()
        os.fsync(out.fileno())
    return marker.read_text().splitlines().count(what)


def install(agent: DeviceAgent) -> None:
    @agent.command("block")
    def block(args: dict[str, Any]) -> Any:
        _mark(f"block {args['tag']}")
        _forever.wait()  # until the test kills the process

    @agent.command("block_idempotent", idempotent=True)
    def block_idempotent(args: dict[str, Any]) -> Any:
        runs = _mark(f"block_idempotent {args['tag']}")
        if runs == 1:
            _forever.wait()
        return {"runs": runs}

    @agent.command("count")
    def count(args: dict[str, Any]) -> Any:
        marker = Path(os.environ["TETHER_TEST_MARKER"])
        return {"lines": marker.read_text().splitlines() if marker.exists() else []}
