"""The device side of the raw baseline: N plain paho clients in one process, one thread.

Each client is a persistent MQTT 5 session (Clean Start 0, Session Expiry 7 days, keepalive 25,
TCP_NODELAY) subscribed to its own ``tether/{id}/cmd`` at QoS 1, and answers every command at
once with a QoS 1 ``{"id", "status": "succeeded"}`` on ``tether/{id}/ack``: no journal, no
store, no handler. The sockets are multiplexed with ``selectors`` (paho's external-loop API:
``loop_read`` / ``loop_write`` / ``loop_misc``).

    python bench/_raw_devices.py CREDENTIALS_JSON PORT   (prints {"type": "ready"} when subscribed)
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PREFIX = "tether"


def nodelay(sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> int:
    with open(sys.argv[1]) as f:
        creds = json.load(f)
    port = int(sys.argv[2])
    sel = selectors.DefaultSelector()
    stop = False
    subscribed = 0
    acks = 0
    clients: list[mqtt.Client] = []
    writers: set[mqtt.Client] = set()

    def on_stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    def make(row: dict[str, str]) -> mqtt.Client:
        device = row["id"]
        cmd_topic = f"{PREFIX}/{device}/cmd"
        ack_topic = f"{PREFIX}/{device}/ack"
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=row["username"], protocol=mqtt.MQTTv5
        )
        c.username_pw_set(row["username"], row["password"])
        c.on_socket_open = lambda _c, _u, sock: nodelay(sock)
        c.on_socket_register_write = lambda _c, _u, _s: writers.add(c)

        def on_connect(cl: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                cl.subscribe(cmd_topic, qos=1)

        def on_subscribe(cl: mqtt.Client, u: Any, mid: int, reasons: Any, props: Any) -> None:
            nonlocal subscribed
            subscribed += 1

        def on_message(cl: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
            nonlocal acks
            command_id = json.loads(msg.payload)["id"]
            cl.publish(ack_topic, json.dumps({"id": command_id, "status": "succeeded"}), qos=1)
            acks += 1

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        return c

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 7 * 24 * 3600
    for row in creds:
        c = make(row)
        c.connect("127.0.0.1", port, keepalive=25, clean_start=False, properties=props)
        sel.register(c.socket(), selectors.EVENT_READ, c)
        clients.append(c)
        # drain the CONNACK of the previous clients as we go
        for key, _ in sel.select(0):
            key.data.loop_read()
    ready_said = False
    last_misc = time.monotonic()
    while not stop:
        for key, _ in sel.select(0.05 if not writers else 0):
            key.data.loop_read()
        if writers:
            for c in list(writers):
                c.loop_write()
                if not c.want_write():
                    writers.discard(c)
        now = time.monotonic()
        if now - last_misc >= 1.0:
            last_misc = now
            for c in clients:
                c.loop_misc()
        if not ready_said and subscribed >= len(clients):
            ready_said = True
            print(json.dumps({"type": "ready", "devices": len(clients)}), flush=True)
    for c in clients:
        c.disconnect()
        c.loop_write()
    print(json.dumps({"type": "stopped", "acks": acks}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
