"""The protocol's one error type: every malformed name, topic or payload raises it."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input that breaks the contract.

    ``what`` names the thing being checked (``"device id"``, ``"ack"``, …) and ``field`` the
    offending field when there is one, so callers can log or report precisely.
    """

    def __init__(self, what: str, reason: str, field: str | None = None) -> None:
        self.what = what
        self.field = field
        self.reason = reason
        where = f"{what}.{field}" if field else what
        super().__init__(f"{where}: {reason}")
