"""The wire contract as pure code: names, topics, payloads and command states. No IO here."""

from tether.protocol.errors import ProtocolError, TetherError
from tether.protocol.ids import (
    CommandIdGenerator,
    is_valid_command_id,
    is_valid_device_id,
    new_command_id,
    validate_device_id,
)
from tether.protocol.payloads import (
    MAX_ARGS_BYTES,
    AckMessage,
    AckStatus,
    CancelNotice,
    CommandMessage,
    DeviceEventMessage,
    StatusMessage,
    decode_ack,
    decode_cancel_notice,
    decode_command,
    decode_event,
    decode_status,
)
from tether.protocol.states import (
    PENDING_STATES,
    TERMINAL_STATES,
    CommandState,
    Decision,
    Verdict,
    decide,
)
from tether.protocol.times import format_time, parse_time, utc_now
from tether.protocol.topics import DEFAULT_PREFIX, Channel, TopicRef, Topics

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_ARGS_BYTES",
    "PENDING_STATES",
    "TERMINAL_STATES",
    "AckMessage",
    "AckStatus",
    "CancelNotice",
    "Channel",
    "CommandIdGenerator",
    "CommandMessage",
    "CommandState",
    "Decision",
    "DeviceEventMessage",
    "ProtocolError",
    "StatusMessage",
    "TetherError",
    "TopicRef",
    "Topics",
    "Verdict",
    "decide",
    "decode_ack",
    "decode_cancel_notice",
    "decode_command",
    "decode_event",
    "decode_status",
    "format_time",
    "is_valid_command_id",
    "is_valid_device_id",
    "new_command_id",
    "parse_time",
    "utc_now",
    "validate_device_id",
]
