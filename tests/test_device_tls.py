"""The agent over TLS, against a Mosquitto with a TLS listener and a CA made for the test."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.agent import DeviceAgent
from devices.config import AgentSettings, TlsSettings
from mosquitto.process import find_mosquitto, free_port, wait_for_port
from tests.support.devices import command
from tether.protocol import AckStatus, decode_ack

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(
        f"user {getpass.getuser()}\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        "allow_anonymous true\npersistence false\nlog_dest stderr\n"
    )
    log = (tmp_path / "tls.log").open("wb")
    proc = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for_port("127.0.0.1", port, time.monotonic() + 10, proc.poll)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_agent_round_trip_over_tls(tls_broker: tuple[int, Path]) -> None:
    port, ca = tls_broker
    acks: list[bytes] = []
    subscribed, got_final = threading.Event(), threading.Event()
    bridge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-bridge")
    bridge.tls_set(ca_certs=str(ca))
    bridge.on_subscribe = lambda *_: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        acks.append(message.payload)
        if decode_ack(message.payload).status.is_final:
            got_final.set()

    bridge.on_message = on_message
    bridge.connect("127.0.0.1", port)
    bridge.loop_start()
    agent = DeviceAgent(
        AgentSettings("dev-tls", "127.0.0.1", port, tls=TlsSettings(ca_file=str(ca)))
    )
    agent.registry.add("echo", lambda args: args)
    try:
        bridge.subscribe("tether/dev-tls/ack", qos=1)
        assert subscribed.wait(10)
        with agent:
            assert agent.wait_connected(10)
            cmd = command("echo", {"over": "tls"})
            bridge.publish("tether/dev-tls/cmd", cmd.encode(), qos=1)
            assert got_final.wait(10)
    finally:
        bridge.disconnect()
        bridge.loop_stop()
    final = decode_ack(acks[-1])
    assert (final.id, final.status, final.result) == (cmd.id, AckStatus.SUCCEEDED, {"over": "tls"})
