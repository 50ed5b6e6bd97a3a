"""Keep secrets out of log lines: a ``logging.Filter`` the entry points install on every handler.

Browsers pass their token as ``?token=`` on ``/ws`` and ``/api/events`` (they cannot set a
header there), and uvicorn logs each WebSocket handshake with its query string. A filter on the
*handlers* sees every record that reaches a file, whichever logger it came from (a filter on a
logger would miss records propagated from its children). Library modules never install it:
only ``tether``'s ``main`` and ``tether gateway`` (after uvicorn has configured its loggers) do.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

# token=… / password=… in a query string or a form; the value ends at &, whitespace or a quote.
_QUERY_SECRET = re.compile(
    r"(?P<key>\b(?:token|access_token|password|secret)=)[^&\s\"'<>]+", re.IGNORECASE
)
# "Authorization: Bearer …", "authorization': 'Bearer …", or a bare "Bearer …".
_BEARER = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with query-string secrets, bearer credentials and each of ``secrets`` replaced."""
    text = _QUERY_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group("key") + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and its formatted traceback) with :func:`redact`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


MIN_SECRET_LENGTH = 8  # a shorter "secret" replaced everywhere would garble the logs


def secrets_in(args: argparse.Namespace) -> list[str]:
    """The secrets a command line and its environment carry: tokens and the broker password."""
    candidates = [
        os.environ.get("TETHER_ADMIN_TOKEN"),
        os.environ.get("TETHER_TOKEN"),
        getattr(args, "token", None),
        getattr(args, "mqtt_password", None),
    ]
    return [s for s in candidates if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH]


def install_redaction(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler configured so far (the root logger's
    and any logger's own, e.g. uvicorn's). Call it again after something configures more."""
    redactor = RedactingFilter(secrets)
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(old)
            handler.addFilter(redactor)
    return redactor
