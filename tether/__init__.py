"""Tether: a command broker for always-connected IoT devices."""

__version__ = "0.1.0"
