"""No traceback reaches a user: each CLI error path, run as a real subprocess, ends in one line.

Every case checks the exit code, the message a user needs, and that stderr (and, for ``tether up``,
stdout with the children's log tails) holds no ``Traceback``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_bridge.store.sharded import ShardedStore
from mosquitto.process import free_port
from tests.support.brokers import BrokerHandle
from tests.support.gateways import TOKENS, RunningGateway
from tether_cli.errors import BUG_EXIT, run_handler
from ui_gateway.auth import Role

TETHER = [sys.executable, "-m", "tether_cli"]
TOKEN = "a-token-of-enough-length-0123"


def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TETHER, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


# A traceback's header, or one of its frames when only a log's tail is shown.
TRACEBACK = re.compile(r"^Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


def assert_one_clean_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    output = result.stderr + result.stdout
    assert not TRACEBACK.search(output), output


@pytest.fixture
def eight_shard_store(tmp_path: Path) -> Path:
    """A data directory whose store was made with 8 shards."""
    data_dir = tmp_path / "data"
    ShardedStore(data_dir / "store", 8).close()
    return data_dir


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


SHARDS_MESSAGE = "was created with 8 shards; opening it with 4"


def test_up_with_other_shards_than_the_store(eight_shard_store: Path) -> None:
    """The issue's ``./scripts/run.sh --shards 4`` against an 8-shard store."""
    result = run(
        "up",
        f"--data-dir={eight_shard_store}",
        f"--mqtt-port={free_port()}",
        f"--http-port={free_port()}",
        "--shards=4",
        env={"TETHER_ADMIN_TOKEN": TOKEN},
    )
    assert_one_clean_error(result, SHARDS_MESSAGE)


@pytest.mark.parametrize("command", ["gateway", "bridge"])
def test_server_with_other_shards_than_the_store(eight_shard_store: Path, command: str) -> None:
    result = run(
        command,
        f"--data-dir={eight_shard_store}",
        f"--mqtt-port={free_port()}",
        "--mqtt-username=bridge",
        "--mqtt-password=secret",
        "--shards=4",
        *([f"--http-port={free_port()}"] if command == "gateway" else []),
        env={"TETHER_ADMIN_TOKEN": TOKEN},
    )
    assert_one_clean_error(result, f"tether {command}: the store in")
    assert SHARDS_MESSAGE in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.broker
def test_bridge_refused_by_the_broker(broker: BrokerHandle, tmp_path: Path) -> None:
    result = run(
        "bridge",
        f"--data-dir={tmp_path}",
        f"--mqtt-port={broker.port}",
        f"--mqtt-username={broker.admin_username}",
        "--mqtt-password=not-the-password",
    )
    assert_one_clean_error(result, "tether bridge: the MQTT broker refused the bridge")


def test_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("status", "--url", url, "--token", TOKEN)
    assert_one_clean_error(result, f"tether status: cannot reach {url}")


@pytest.mark.broker
def test_bad_token(gateway: RunningGateway) -> None:
    result = run("status", "--url", gateway.url, "--token", "wrong-token-0123456789")
    assert_one_clean_error(result, "tether status: HTTP 401 unauthorized")


@pytest.mark.broker
def test_unknown_device(gateway: RunningGateway) -> None:
    result = run("send", "nosuch", "echo", "--url", gateway.url, "--token", TOKENS[Role.ADMIN])
    assert_one_clean_error(result, "tether send: HTTP 404 unknown_device")


def test_bad_args_json() -> None:
    result = run("send", "pump-1", "echo", "--args", "{bad", "--token", TOKEN)
    assert_one_clean_error(result, "tether send: --args is not JSON")


def test_no_token() -> None:
    result = run("status", env={"TETHER_TOKEN": ""})
    assert_one_clean_error(result, "tether status: no token")


def test_invalid_id() -> None:
    result = run("send", "sim-00001#x", "echo", "--token", TOKEN)
    assert_one_clean_error(result, "tether send: device id: 'sim-00001#x' is not allowed")


def test_http_port_in_use(tmp_path: Path, held_port: int) -> None:
    result = run("up", f"--data-dir={tmp_path}", f"--http-port={held_port}")
    assert_one_clean_error(result, f"HTTP port {held_port} is already in use")


def test_mqtt_port_in_use(tmp_path: Path, held_port: int) -> None:
    result = run("broker", f"--data-dir={tmp_path}", f"--mqtt-port={held_port}")
    assert_one_clean_error(result, "already in use")


def test_a_bad_variable_is_an_error_naming_its_flag(tmp_path: Path) -> None:
    result = run("broker-config", env={"TETHER_DATA_DIR": str(tmp_path), "TETHER_MQTT_PORT": "x"})
    assert_one_clean_error(result, "argument --mqtt-port: invalid int value: 'x'")


def test_missing_credentials_file(tmp_path: Path) -> None:
    result = run("simulate", "1", "--credentials", str(tmp_path / "missing.json"))
    assert_one_clean_error(result, "tether simulate: cannot read credentials file")


def test_handlers_module_that_does_not_exist() -> None:
    result = run("device", "--id", "pump-1", "--handlers", "no_such_module_here:registry")
    assert_one_clean_error(result, "tether device: No module named 'no_such_module_here'")


def _buggy(args: argparse.Namespace) -> int:
    return len(args.command) // 0


def test_a_bug_is_one_line_and_its_traceback_needs_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_handler(_buggy, argparse.Namespace(command="status", verbose=False)) == BUG_EXIT
    err = capsys.readouterr().err
    assert err.startswith("tether status: unexpected ZeroDivisionError: integer division")
    assert "run again with -v" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ZeroDivisionError):
        run_handler(_buggy, argparse.Namespace(command="status", verbose=True))
