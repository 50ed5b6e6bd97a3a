"""One error tree: every exception class in the packages derives from ``TetherError`` and carries
a contract code with its HTTP status; the gateway turns any exception into the contract's body in
one function, and the CLI treats the whole tree as a user error."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import pkgutil

import pytest

from tether.protocol.errors import BadRequest, ProtocolError, TetherError, Unauthorized
from tether_cli.errors import BUG_EXIT, USAGE_EXIT, run_handler
from ui_gateway.errors import INTERNAL_MESSAGE, error_frame, error_response
from ui_gateway.openapi import SCHEMAS

PACKAGES = ("broker_bridge", "devices", "mosquitto", "tether", "tether_cli", "ui_gateway")

# docs/protocol.md, "Errors": each code with the status its class carries (an instance may
# answer 422 or 405 for bad_request); ``internal`` is a fault, never shown with its message.
CODES = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "unknown_device": 404,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "queue_full": 429,
    "unavailable": 503,
    "internal": 500,
}


def exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, f"{name}.")
            if not info.name.endswith(".__main__")  # importing it runs the program
        ]
        for module in modules:
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    found.append(cls)
    return found


CLASSES = exception_classes()


def test_the_walk_finds_the_errors_of_every_package() -> None:
    packages = {cls.__module__.split(".")[0] for cls in CLASSES}
    assert packages == set(PACKAGES)
    names = {cls.__name__ for cls in CLASSES}
    assert {"StoreUnavailable", "DeviceError", "ProtocolError", "ClientTooSlow"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_class_is_in_the_one_tree(cls: type[BaseException]) -> None:
    assert issubclass(cls, TetherError)
    assert CODES.get(cls.code) == cls.status, (cls.code, cls.status)


def test_public_codes_are_the_documented_ones() -> None:
    documented = set(SCHEMAS["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    public = {cls.code for cls in CLASSES if issubclass(cls, TetherError)} - {"internal"}
    assert public <= documented
    assert set(CODES) - {"internal"} == documented


def test_callers_that_catch_builtins_still_catch() -> None:
    by_name = {cls.__name__: cls for cls in CLASSES}
    for name in ("ProtocolError", "CursorError", "ConfigError", "BadArgs", "MarkersMissing"):
        assert issubclass(by_name[name], ValueError), name
    for name in ("StoreUnavailable", "SchemaError", "StoreConfigError", "DynsecError"):
        assert issubclass(by_name[name], RuntimeError), name
    for name in ("BrokerConfigError", "DataDirError", "StackError", "ProvisioningError"):
        assert issubclass(by_name[name], RuntimeError), name


def body_of(response_body: bytes | memoryview) -> object:
    return json.loads(bytes(response_body))


def test_an_error_raised_on_purpose_is_shown_with_its_code_and_status() -> None:
    error = ProtocolError("device id", "'a#b' is not allowed")
    response = error_response(error)
    assert response.status_code == 400
    assert body_of(response.body) == {
        "error": {"code": "bad_request", "message": "device id: 'a#b' is not allowed"}
    }
    assert error_frame("r1", BadRequest("no", status=422)) == {
        "type": "error",
        "ref": "r1",
        "error": {"code": "bad_request", "message": "no"},
    }
    assert error_response(BadRequest("no", status=422)).status_code == 422


def test_unauthorized_asks_for_a_bearer_token() -> None:
    response = error_response(Unauthorized("who are you"), headers={"X-Extra": "1"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["X-Extra"] == "1"


@pytest.mark.parametrize(
    "error", [RuntimeError("db path /secret is broken"), TetherError("store /secret is broken")]
)
def test_a_fault_is_internal_and_its_text_stays_in_the_log(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ui_gateway.errors")
    response = error_response(error, where="GET /api/x")
    assert response.status_code == 500
    assert body_of(response.body) == {"error": {"code": "internal", "message": INTERNAL_MESSAGE}}
    assert b"secret" not in bytes(response.body)
    [record] = caplog.records
    assert "GET /api/x" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is error


def test_the_cli_treats_the_whole_tree_as_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    class SomeNewError(TetherError):
        """Added later by any package: the CLI needs no list to know it."""

    def handler(args: argparse.Namespace) -> int:
        raise SomeNewError("the thing is not there")

    def buggy(args: argparse.Namespace) -> int:
        raise KeyError("oops")

    args = argparse.Namespace(command="demo")
    assert run_handler(handler, args) == USAGE_EXIT
    assert capsys.readouterr().err == "tether demo: the thing is not there\n"
    assert run_handler(buggy, args) == BUG_EXIT
    assert "unexpected KeyError" in capsys.readouterr().err
