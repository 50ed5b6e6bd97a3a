"""Flags derived from the settings dataclasses, each also read from a ``TETHER_*`` variable.

A settings field declared with :func:`tether.settings.setting` becomes an argparse option through
:func:`add_flags`: its name gives the flag (``redelivery_after`` → ``--redelivery-after``) and the
variable (``TETHER_REDELIVERY_AFTER``) unless the field names others, its type gives the argparse
type (``bool`` → a switch, ``list`` → repeatable, an enum → its values as choices), and its default
is the flag's default. :func:`values` reads the parsed options back as constructor arguments of
the same class, so a default is written once: in the dataclass. Every action also carries a
:class:`FlagDoc`, from which ``scripts/flags_doc.py`` writes the table in ``docs/operations.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tether.settings import Flag, flag_of

T = TypeVar("T")

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
    """The documentation :func:`add_flags` attached to ``action`` (``None`` for other actions)."""
    doc = getattr(action, _DOC_ATTR, None)
    return doc if isinstance(doc, FlagDoc) else None


def env_value(name: str) -> str | None:
    """``TETHER_<name>``, or ``None`` when unset or empty: the one reader of the variables."""
    return os.environ.get(f"{ENV_PREFIX}{name}") or None


def default_of(cls: type[Any], name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``, for another default to repeat it."""
    for field in dataclasses.fields(cls):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise AttributeError(f"{cls.__name__} has no field {name}")


def _shown_default(default: Any) -> str:
    if default is None or default is False or default == []:
        return ""
    if isinstance(default, enum.Enum):
        return str(default.value)
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


@dataclass(frozen=True, slots=True)
class _Option:
    """One flagged field, resolved: its spelling, variable, argparse kind and default."""

    field: str
    flag: Flag
    option: str
    dest: str
    variable: str
    kind: type[Any]  # the field's type without ``| None``
    default: Any  # None for a field without a default

    @property
    def is_switch(self) -> bool:
        return self.kind is bool

    @property
    def is_list(self) -> bool:
        return self.kind is list


def _base_type(hint: Any) -> type[Any]:
    """``int | None`` → ``int``; ``list[str]`` → ``list``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint)
    base = origin if origin is not None else hint
    if not isinstance(base, type):
        raise TypeError(f"no flag for a field of type {hint!r}")
    return base


def _options(cls: type[Any], only: Iterable[str] | None, skip: Iterable[str]) -> list[_Option]:
    hints = typing.get_type_hints(cls)
    by_name = {field.name: field for field in dataclasses.fields(cls)}
    chosen = list(only) if only is not None else [name for name in by_name if name not in skip]
    found = []
    for name in chosen:
        field = by_name[name]
        flag = flag_of(field)
        if flag is None:
            if only is not None:
                raise TypeError(f"{cls.__name__}.{name} is not declared with setting()")
            continue
        option = flag.flag or "--" + name.replace("_", "-")
        dest = option.lstrip("-").replace("-", "_")
        variable = ENV_PREFIX + (flag.env or dest.upper())
        default = default_of(cls, name) if _has_default(field) else None
        found.append(_Option(name, flag, option, dest, variable, _base_type(hints[name]), default))
    return found


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )


def add_flags(
    parser: ArgumentContainer,
    cls: type[Any],
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> None:
    """Add an option for each flagged field of ``cls`` (in field order, or in ``only``'s).

    The variable's text goes through the flag's own type (argparse converts a string default
    as if it were given on the command line), so a bad value is an argparse error naming the flag,
    never a traceback. Switches take 1/true/yes/on; list fields a comma-separated list. A
    required field is optional on the command line when its variable is set.
    """
    for option in _options(cls, only, skip):
        _add(parser, option)


def _add(parser: ArgumentContainer, option: _Option) -> argparse.Action:
    flag = option.flag
    raw = os.environ.get(option.variable) or None
    kwargs: dict[str, Any] = {"dest": option.dest}
    if flag.metavar:
        kwargs["metavar"] = flag.metavar
    value: Any = option.default
    if option.is_switch:
        kwargs["action"] = "store_true"
        value = raw.strip().lower() in TRUE_WORDS if raw is not None else bool(option.default)
    elif option.is_list:
        kwargs["action"] = "append"
        value = [item for item in raw.split(",") if item] if raw else list(option.default or [])
    else:
        if flag.choices is not None:
            kwargs["choices"] = list(flag.choices)
        if flag.parse is not None:
            kwargs["type"] = flag.parse
        elif issubclass(option.kind, enum.Enum):
            kwargs["choices"] = [member.value for member in option.kind]
        elif option.kind is not str:
            kwargs["type"] = option.kind
        if isinstance(value, enum.Enum):
            value = value.value
        if raw is not None:
            value = raw
        elif flag.required:
            kwargs["required"] = True
    shown = _shown_default(option.default) if flag.default_text is None else flag.default_text
    suffix = f"{option.variable}, default {shown}" if shown else option.variable
    names = [flag.short, option.option] if flag.short else [option.option]
    action = parser.add_argument(*names, default=value, help=f"{flag.help} ({suffix})", **kwargs)
    doc = FlagDoc(option.variable, shown, flag.help, literal=flag.default_text is None)
    setattr(action, _DOC_ATTR, doc)
    return action


def values(
    cls: type[Any],
    args: argparse.Namespace,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, Any]:
    """The flagged fields of ``cls`` as parsed into ``args``, keyed by field name.

    Enum fields come back as members; a field left unset whose dataclass default is not
    ``None`` is left out, so the constructor applies the default (and a field without one is
    the caller's to give).
    """
    found: dict[str, Any] = {}
    for option in _options(cls, only, skip):
        if not hasattr(args, option.dest):
            continue
        value = getattr(args, option.dest)
        if value is None and option.default is None:
            if _required_field(cls, option.field):
                continue
        elif value is not None and issubclass(option.kind, enum.Enum):
            value = option.kind(value)
        elif isinstance(value, str) and option.kind is Path:
            value = Path(value)
        found[option.field] = value
    return found


def _required_field(cls: type[Any], name: str) -> bool:
    return not any(f.name == name and _has_default(f) for f in dataclasses.fields(cls))


def build(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls(**values(cls, args), **given)``: ``given`` wins over the parsed flags."""
    return cls(**{**values(cls, args), **given})
