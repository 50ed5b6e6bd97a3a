"""The MQTT session a device holds, built once for the agent and the simulator alike.

Persistent session (Clean Start 0 and a Session Expiry of at least 7 days on MQTT 5, Clean
Session 0 on 3.1.1), manual PUBACKs (sent only once the journal has the command), the Last Will
``{"online": false}`` retained on ``status``, credentials and TLS.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.config import AgentSettings, MqttVersion, TlsSettings
from tether.protocol import StatusMessage, utc_now

paho_log = logging.getLogger("devices.paho")


class _QuietAfterDisconnect(logging.Filter):
    """paho 2.2's network loop logs an ERROR on every clean disconnect; it means nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


paho_log.addFilter(_QuietAfterDisconnect())


def build_client(settings: AgentSettings, *, logger: bool = True) -> mqtt.Client:
    v5 = settings.mqtt_version is MqttVersion.V5
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.effective_client_id,
        protocol=settings.mqtt_version.paho,
        clean_session=None if v5 else False,
        reconnect_on_failure=True,
        manual_ack=True,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls is not None:
        client.tls_set_context(tls_context(settings.tls))
    client.will_set(
        settings.topics.status(settings.device_id),
        StatusMessage(online=False).encode(),
        qos=1,
        retain=True,
    )
    client.connect_timeout = settings.connect_timeout
    if logger:
        client.enable_logger(paho_log)
    return client


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        context.check_hostname = False
    return context


def connect_args(settings: AgentSettings) -> dict[str, Any]:
    """Keyword arguments of ``Client.connect``/``connect_async`` for a persistent session."""
    args: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "keepalive": settings.keepalive,
    }
    if settings.mqtt_version is MqttVersion.V5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.session_expiry
        props.ReceiveMaximum = settings.receive_maximum
        args["clean_start"] = False
        args["properties"] = props
    return args


def online_status(settings: AgentSettings) -> bytes:
    return StatusMessage(
        online=True, at=utc_now(), agent=settings.agent_name, features=settings.features
    ).encode()


def offline_status() -> bytes:
    return StatusMessage(online=False, at=utc_now()).encode()
