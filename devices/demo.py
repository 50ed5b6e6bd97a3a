"""The built-in demo commands: ``echo``, ``sleep``, ``fail``, ``set_config``, ``get_config``,
``reboot``. The agent runs them for ``tether device``; the simulator runs the same ones.

| name | args | result |
|---|---|---|
| ``echo`` | anything | the args |
| ``sleep`` | ``{"seconds": 0..300}`` | ``{"slept": seconds}`` |
| ``fail`` | ``{"message"?: str}`` | always ``failed`` with that message |
| ``set_config`` | ``{key: value, ...}`` (at least one) | ``{"config": whole config}`` |
| ``get_config`` | ``{"key"?: str}`` | ``{"config": whole config}`` or ``{"key", "value"}`` |
| ``reboot`` | ``{"delay"?: 0..60}`` (default 1) | ``{"rebooting": true, "delay"}`` |

After ``reboot`` has sent its final ack the device drops its connection (the broker publishes its
Last Will) and comes back ``delay`` seconds later.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devices.errors import BadArgs, DeviceError
from devices.handlers import HandlerRegistry, Validator, arg, no_extra_args
from tether.protocol.payloads import JSONObject

if TYPE_CHECKING:
    from devices.agent import DeviceAgent

MAX_SLEEP = 300.0
MAX_REBOOT_DELAY = 60.0


class DemoFailure(DeviceError):
    """What ``fail`` raises."""


@dataclass(slots=True)
class DemoState:
    """What the demo commands act on: one device's config and a way to reboot it."""

    config: dict[str, Any] = field(default_factory=dict)
    reboot: Callable[[float], None] = lambda delay: None
    sleep: Callable[[float], None] = time.sleep


def _number(args: JSONObject, name: str, low: float, high: float, default: Any = ...) -> float:
    value = (
        arg(args, name, (int, float)) if default is ... else arg(args, name, (int, float), default)
    )
    if not low <= value <= high:
        raise BadArgs(f"{name} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def check_sleep(args: JSONObject) -> None:
    no_extra_args(args, "seconds")
    _number(args, "seconds", 0, MAX_SLEEP)


def check_fail(args: JSONObject) -> None:
    no_extra_args(args, "message")
    arg(args, "message", str, None)


def check_set_config(args: JSONObject) -> None:
    if not args:
        raise BadArgs("give at least one key to set")


def check_get_config(args: JSONObject) -> None:
    no_extra_args(args, "key")
    arg(args, "key", str, None)


def check_reboot(args: JSONObject) -> None:
    no_extra_args(args, "delay")
    _number(args, "delay", 0, MAX_REBOOT_DELAY, 1.0)


def echo(state: DemoState, args: JSONObject) -> Any:
    return args


def sleep(state: DemoState, args: JSONObject) -> Any:
    seconds = _number(args, "seconds", 0, MAX_SLEEP)
    state.sleep(seconds)
    return {"slept": seconds}


def fail(state: DemoState, args: JSONObject) -> Any:
    raise DemoFailure(arg(args, "message", str, "failed on request"))


def set_config(state: DemoState, args: JSONObject) -> Any:
    state.config.update(args)
    return {"config": dict(state.config)}


def get_config(state: DemoState, args: JSONObject) -> Any:
    key = arg(args, "key", str, None)
    if key is None:
        return {"config": dict(state.config)}
    return {"key": key, "value": state.config.get(key)}


def reboot(state: DemoState, args: JSONObject) -> Any:
    delay = _number(args, "delay", 0, MAX_REBOOT_DELAY, 1.0)
    state.reboot(delay)
    return {"rebooting": True, "delay": delay}


@dataclass(frozen=True, slots=True)
class DemoCommand:
    run: Callable[[DemoState, JSONObject], Any]
    idempotent: bool
    validate: Validator | None


DEMO_COMMANDS: dict[str, DemoCommand] = {
    "echo": DemoCommand(echo, True, None),
    "sleep": DemoCommand(sleep, True, check_sleep),
    "fail": DemoCommand(fail, True, check_fail),
    "set_config": DemoCommand(set_config, True, check_set_config),
    "get_config": DemoCommand(get_config, True, check_get_config),
    "reboot": DemoCommand(reboot, False, check_reboot),
}


def demo_registry(state: DemoState) -> HandlerRegistry:
    """The demo commands bound to one device's state."""
    registry = HandlerRegistry()
    for name, command in DEMO_COMMANDS.items():
        registry.add(
            name,
            functools.partial(command.run, state),
            idempotent=command.idempotent,
            validate=command.validate,
        )
    return registry


def install(agent: DeviceAgent) -> DemoState:
    """Give an agent the demo commands (``reboot`` really drops its connection)."""
    state = DemoState(reboot=agent.request_reboot)
    agent.registry.include(demo_registry(state))
    return state
