"""The device package's one error hierarchy."""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every error the device side raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """Settings that cannot work: a bad broker address, an invalid device id, a keepalive > 25 s."""


class BadArgs(DeviceError, ValueError):
    """A command's args are not what its handler accepts: the command is ``rejected``, not run.

    Raise it from a ``validate`` hook (before ``received``) or from the handler itself.
    """


class JournalError(DeviceError):
    """The command journal cannot be opened or written."""
