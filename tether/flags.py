"""Flags that also read a ``TETHER_*`` environment variable, and flags several subcommands share.

Every option of every subcommand is declared through :func:`env_flag`, which reads its variable,
writes the variable and the default into ``--help`` and tags the argparse action with both, so
``scripts/flags_doc.py`` can generate the flag table of ``docs/operations.md`` from this code and
``tests/test_flags_doc.py`` can check that nothing is missing.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosquitto.config import BrokerSettings

ENV_PREFIX = "TETHER_"
TRUE_WORDS = ("1", "true", "yes", "on")

ArgumentContainer = argparse.ArgumentParser | argparse._ArgumentGroup


@dataclass(frozen=True, slots=True)
class FlagDoc:
    """What the help and the docs say about one flag: its variable, default and meaning."""

    variable: str
    default: str
    meaning: str
    literal: bool = True  # the default is a value (shown as code), not a description


_DOC_ATTR = "tether_flag_doc"


def flag_doc(action: argparse.Action) -> FlagDoc | None:
    """The documentation :func:`env_flag` attached to ``action`` (``None`` for other actions)."""
    doc = getattr(action, _DOC_ATTR, None)
    return doc if isinstance(doc, FlagDoc) else None


def env_default(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(f"{ENV_PREFIX}{name}", fallback)


def _shown_default(default: Any) -> str:
    if default is None or default is False or default == []:
        return ""
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def env_flag(
    parser: ArgumentContainer,
    *flags: str,
    env: str,
    default: Any = None,
    help: str,
    default_text: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """``parser.add_argument(*flags, ...)`` whose default comes from ``TETHER_<env>`` when set.

    The variable's text goes through the flag's own ``type`` (argparse converts a string default
    as if it were given on the command line), so a bad value is an argparse error naming the flag,
    never a traceback. ``store_true`` flags take 1/true/yes/on; ``append`` flags a comma-separated
    list. ``default_text`` is what help and docs show when the plain default says too little.
    """
    variable = f"{ENV_PREFIX}{env}"
    raw = os.environ.get(variable) or None
    action_kind = kwargs.get("action")
    value: Any = default
    if action_kind == "store_true":
        value = raw.strip().lower() in TRUE_WORDS if raw is not None else bool(default)
    elif action_kind == "append":
        value = [item for item in raw.split(",") if item] if raw else list(default or [])
    elif raw is not None:
        value = raw
        if kwargs.get("required"):
            kwargs["required"] = False
    shown = _shown_default(default) if default_text is None else default_text
    suffix = f"{variable}, default {shown}" if shown else variable
    action = parser.add_argument(*flags, default=value, help=f"{help} ({suffix})", **kwargs)
    setattr(action, _DOC_ATTR, FlagDoc(variable, shown, help, literal=default_text is None))
    return action


def broker_dir(args: argparse.Namespace) -> Path:
    chosen: Path | None = args.broker_dir
    return (chosen or args.data_dir / "mosquitto").resolve()


def add_data_dir_flags(parser: ArgumentContainer) -> None:
    env_flag(
        parser,
        "--data-dir",
        env="DATA_DIR",
        type=Path,
        default=Path(".tether"),
        help="the stack's state: broker files in mosquitto/, the command store in store/",
    )
    env_flag(
        parser,
        "--broker-dir",
        env="BROKER_DIR",
        type=Path,
        default_text="DATA_DIR/mosquitto",
        help="the broker's config, persistence and credentials",
    )


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    add_data_dir_flags(parser)
    env_flag(
        parser,
        "--mqtt-port",
        env="MQTT_PORT",
        type=int,
        default=18830,
        help="the broker's port (clear of a broker on 1883)",
    )
    env_flag(
        parser,
        "--mqtt-bind",
        env="MQTT_BIND",
        default="127.0.0.1",
        help="the address the broker listens on",
    )


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    return BrokerSettings(
        port=args.mqtt_port,
        data_dir=broker_dir(args),
        bind_address=args.mqtt_bind,
        dynsec_plugin=getattr(args, "dynsec_plugin", None),
        user=getattr(args, "broker_user", None),
    )


def add_http_address_flags(parser: argparse.ArgumentParser) -> None:
    """Where the dashboard and API listen: for ``tether gateway`` and ``tether up``."""
    env_flag(
        parser,
        "--http-host",
        env="HTTP_HOST",
        default="127.0.0.1",
        help="address of the dashboard and API",
    )
    env_flag(
        parser,
        "--http-port",
        env="HTTP_PORT",
        type=int,
        default=8080,
        help="port of the dashboard and API",
    )
