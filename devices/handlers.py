"""Command handlers: a registry filled with a decorator, and small helpers to check args.

A handler takes the command's ``args`` (a JSON object) and returns a JSON-encodable result, or
raises. Raising :class:`~devices.errors.BadArgs` means the command is ``rejected``; any other
exception means ``failed`` with the exception's text. A ``validate`` hook runs before the device
says ``received``, so bad args are rejected without the handler ever starting.

A handler declared ``idempotent=True`` is run again after the agent crashed in the middle of it;
any other is reported ``failed`` with error ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from devices.errors import BadArgs
from tether.protocol.payloads import JSONObject, validate_command_name

Handler = Callable[[JSONObject], Any]
Validator = Callable[[JSONObject], None]
H = TypeVar("H", bound=Handler)

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Handler
    idempotent: bool = False
    validate: Validator | None = None


class HandlerRegistry:
    """Command name → :class:`CommandSpec`.

    ``@registry.command("reboot")`` registers the decorated function under that name (or the
    function's own name when none is given) and returns it unchanged.
    """

    def __init__(self) -> None:
        self._specs: dict[str, CommandSpec] = {}

    def command(
        self,
        name: str | None = None,
        *,
        idempotent: bool = False,
        validate: Validator | None = None,
    ) -> Callable[[H], H]:
        def register(fn: H) -> H:
            self.add(name or fn.__name__, fn, idempotent=idempotent, validate=validate)
            return fn

        return register

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        idempotent: bool = False,
        validate: Validator | None = None,
    ) -> CommandSpec:
        """Register (or replace) a handler."""
        validate_command_name(name, "handler")
        spec = CommandSpec(name, handler, idempotent, validate)
        self._specs[name] = spec
        return spec

    def include(self, other: HandlerRegistry) -> None:
        """Copy every handler of ``other`` into this registry, replacing same-named ones."""
        self._specs.update(other._specs)

    def lookup(self, name: str) -> CommandSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)


def arg(
    args: JSONObject,
    name: str,
    kind: type | tuple[type, ...],
    default: Any = _MISSING,
) -> Any:
    """``args[name]`` if it has type ``kind``, else :class:`BadArgs` (``bool`` is no number)."""
    if name not in args:
        if default is _MISSING:
            raise BadArgs(f"{name} is missing")
        return default
    value = args[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise BadArgs(f"{name} must be {expected}, got {type(value).__name__}")
    return value


def no_extra_args(args: JSONObject, *allowed: str) -> None:
    """Raise :class:`BadArgs` naming any key of ``args`` not in ``allowed``."""
    extra = sorted(set(args) - set(allowed))
    if extra:
        raise BadArgs(f"unexpected args: {', '.join(extra)}")
