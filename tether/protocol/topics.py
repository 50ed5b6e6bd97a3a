"""Topic names for a prefix ``P``: ``P/{device}/cmd|ack|evt|status``, built and parsed."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tether.protocol.errors import ProtocolError
from tether.protocol.ids import is_valid_device_id, validate_device_id

DEFAULT_PREFIX = "tether"


class Channel(enum.StrEnum):
    CMD = "cmd"
    ACK = "ack"
    EVT = "evt"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class TopicRef:
    device_id: str
    channel: Channel


def validate_prefix(prefix: str) -> str:
    levels = prefix.split("/")
    if not prefix or any(not level for level in levels):
        raise ProtocolError("topic prefix", f"{prefix!r} must be non-empty levels joined by '/'")
    if prefix.startswith("$") or any(ch in prefix for ch in "+#\x00") or prefix != prefix.strip():
        raise ProtocolError("topic prefix", f"{prefix!r} may not hold '$', '+', '#', NUL or spaces")
    return prefix


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the topics of one deployment (one prefix)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def topic(self, device_id: str, channel: Channel) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/{channel.value}"

    def cmd(self, device_id: str) -> str:
        return self.topic(device_id, Channel.CMD)

    def ack(self, device_id: str) -> str:
        return self.topic(device_id, Channel.ACK)

    def evt(self, device_id: str) -> str:
        return self.topic(device_id, Channel.EVT)

    def status(self, device_id: str) -> str:
        return self.topic(device_id, Channel.STATUS)

    def wildcard(self, channel: Channel) -> str:
        """The bridge's subscription for one channel of every device: ``P/+/ack`` and so on."""
        return f"{self.prefix}/+/{channel.value}"

    def parse(self, topic: str) -> TopicRef:
        """Split a concrete topic into device id and channel; raise on anything else."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise ProtocolError("topic", f"{topic[:200]!r} is not under prefix {self.prefix!r}")
        rest = topic[len(head) :].split("/")
        if len(rest) != 2:
            raise ProtocolError("topic", f"{topic[:200]!r} is not {self.prefix}/<device>/<channel>")
        device_id, channel_name = rest
        if not is_valid_device_id(device_id):
            raise ProtocolError("topic", f"{topic[:200]!r} holds an invalid device id")
        try:
            channel = Channel(channel_name)
        except ValueError:
            raise ProtocolError("topic", f"{topic[:200]!r} has unknown channel") from None
        return TopicRef(device_id, channel)
