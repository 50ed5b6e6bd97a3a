"""A bridge process that accepts a burst of commands and prints each id once it is committed.

``python -m tests.support.burst_driver SETTINGS_JSON`` — the crash tests SIGKILL it mid-burst.
Lines: ``accepted <command id> <n>``, then ``done`` once every command is accepted.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.mqtt_session import SessionSettings
from broker_bridge.store import jobs


def main() -> None:
    spec = json.loads(sys.argv[1])
    bridge = Bridge(
        BridgeSettings(
            data_dir=Path(spec["data_dir"]),
            mqtt=SessionSettings(spec["host"], spec["port"], spec["username"], spec["password"]),
        )
    )
    bridge.start()
    lock = threading.Lock()
    devices: list[str] = spec["devices"]
    futures = []
    for n in range(spec["count"]):

        def report(f: Future[jobs.Accepted], n: int = n) -> None:
            with lock:
                print(f"accepted {f.result().record['id']} {n}", flush=True)

        future = bridge.send(devices[n % len(devices)], "count", {"n": n})
        future.add_done_callback(report)
        futures.append(future)
    for future in futures:
        future.result()
    print("done", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    bridge.stop()


if __name__ == "__main__":
    main()
