"""RFC 3339 UTC timestamps, the only time format on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

from tether.protocol.errors import ProtocolError


def format_time(moment: datetime) -> str:
    """``2026-11-27T03:52:24.123456Z``: UTC, microseconds, so the strings sort as times."""
    if moment.tzinfo is UTC:  # the common case, without the conversion
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")
    # isoformat, not strftime: it is faster and zero-pads years below 1000 on every libc.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def parse_time(value: object, what: str = "time", field: str | None = None) -> datetime:
    """Parse an RFC 3339 string with an offset (``Z`` or ``±hh:mm``) into an aware UTC datetime."""
    if not isinstance(value, str):
        raise ProtocolError(what, f"must be an RFC 3339 string, got {type(value).__name__}", field)
    if len(value) > 40 or "T" not in value.upper():
        raise ProtocolError(what, f"{value[:40]!r} is not an RFC 3339 date-time", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProtocolError(what, f"{value!r} is not an RFC 3339 date-time", field) from None
    if parsed.tzinfo is None:
        raise ProtocolError(what, f"{value!r} has no UTC offset", field)
    return parsed.astimezone(UTC)
