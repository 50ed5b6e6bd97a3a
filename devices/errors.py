"""The device package's errors, in the project's one tree (:mod:`tether.protocol.errors`)."""

from __future__ import annotations

from tether.protocol.errors import BadRequest, TetherError


class DeviceError(TetherError):
    """Base of every error the device side raises on purpose."""


class ConfigError(DeviceError, BadRequest, ValueError):
    """Settings that cannot work: a bad broker address, an invalid device id, a keepalive > 25 s."""


class BadArgs(DeviceError, BadRequest, ValueError):
    """A command's args are not what its handler accepts: the command is ``rejected``, not run.

    Raise it from a ``validate`` hook (before ``received``) or from the handler itself.
    """


class JournalError(DeviceError):
    """The command journal cannot be opened or written."""
