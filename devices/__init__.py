"""The device side of Tether: the device agent (paho-mqtt) and the fleet simulator.

``DeviceAgent`` runs one device: persistent MQTT session, QoS 1 commands, a journal for
exactly-once execution, acks, events and presence. ``Simulator`` runs many devices in one asyncio
process with the same rules. The rules themselves are pure code in :mod:`devices.core`.
"""

from devices.agent import DeviceAgent
from devices.config import AgentSettings, MqttVersion, TlsSettings, parse_broker
from devices.errors import BadArgs, ConfigError, DeviceError, JournalError
from devices.events import EventBuffer, OverflowPolicy
from devices.handlers import CommandSpec, HandlerRegistry, arg, no_extra_args
from devices.journal import Journal, MemoryJournal, SqliteJournal

__all__ = [
    "AgentSettings",
    "BadArgs",
    "CommandSpec",
    "ConfigError",
    "DeviceAgent",
    "DeviceError",
    "EventBuffer",
    "HandlerRegistry",
    "Journal",
    "JournalError",
    "MemoryJournal",
    "MqttVersion",
    "OverflowPolicy",
    "SqliteJournal",
    "TlsSettings",
    "arg",
    "no_extra_args",
    "parse_broker",
]
