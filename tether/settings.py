"""How a settings dataclass field says it is also a command-line flag and a ``TETHER_*`` variable.

Every service keeps one settings dataclass (``BridgeSettings``, ``GatewaySettings``,
``AgentSettings``, ...) and its defaults live there and nowhere else. A field declared with
:func:`setting` carries a :class:`Flag`: its help text and, when the spelling cannot be derived
from the field's name, its flag and variable. The roof (``tether_cli.flags``) turns those fields
into argparse options that fall back to ``TETHER_<VARIABLE>``, the way uvicorn derives its
options from its ``Config`` and Starlette's ``Config(key, cast=, default=)`` reads the
environment. This module is declaration only: no argparse, no environment, no IO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FLAG_KEY = "tether_flag"


@dataclass(frozen=True, slots=True)
class Flag:
    """What the command line and ``--help`` know about one settings field."""

    help: str
    flag: str | None = None  # default: --field-name
    env: str | None = None  # TETHER_<env>; default: the flag's name, upper case
    short: str | None = None  # e.g. "-v"
    default_text: str | None = None  # what help shows when the plain default says too little
    metavar: str | None = None
    choices: tuple[str, ...] | None = None  # enum fields get their values without this
    parse: Callable[[str], Any] | None = None  # text to value; default: from the field's type
    required: bool = False  # a field without a default that the command line must give


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    env: str | None = None,
    short: str | None = None,
    default_text: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    required: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """``dataclasses.field(default=...)`` that is also a flag; see :class:`Flag`."""
    meta = {
        FLAG_KEY: Flag(help, flag, env, short, default_text, metavar, choices, parse, required),
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(field: dataclasses.Field[Any]) -> Flag | None:
    """The :class:`Flag` a field was declared with, or ``None`` for a plain field."""
    found = field.metadata.get(FLAG_KEY)
    return found if isinstance(found, Flag) else None


def float_or_none(text: str) -> float | None:
    """A number of seconds, where ``none``, ``0`` or nothing means "never"."""
    return None if text.strip().lower() in ("", "none", "0") else float(text)
