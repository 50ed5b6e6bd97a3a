"""One stack per data directory: a second ``tether up`` (or ``bridge``, ``gateway``) is refused
before it touches anything, and the lock goes away with its holder, even a SIGKILLed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mosquitto.process import free_port
from tests.support.waiting import wait_until
from tether_cli.datadir_lock import LOCK_FILE_NAME, DataDirBusy, DataDirLock

TOKEN = "datadir-lock-test-admin-token"


def tether(*argv: str) -> list[str]:
    return [sys.executable, "-m", "tether_cli", *argv]


def start_up(data_dir: Path, mqtt_port: int, http_port: int, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as log:
        return subprocess.Popen(
            tether(
                "up",
                f"--data-dir={data_dir}",
                f"--mqtt-port={mqtt_port}",
                f"--http-port={http_port}",
                "--shards=2",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TETHER_ADMIN_TOKEN": TOKEN},
        )


def wait_up(proc: subprocess.Popen[bytes], out: Path) -> None:
    def up() -> bool:
        assert proc.poll() is None, out.read_text()
        return "Tether is up." in out.read_text()

    wait_until(up, 60, "tether up to be up")


def refused(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tether(*argv),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TETHER_ADMIN_TOKEN": TOKEN},
    )


KEPT = ("mosquitto/mosquitto.conf", "mosquitto/bridge-credentials.json", "store/store.json")


def snapshot(data_dir: Path) -> dict[str, tuple[bytes, int]]:
    """What a second stack used to rewrite (content and mtime), and the names of the logs."""
    files = {name: data_dir / name for name in KEPT}
    state = {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in files.items()}
    state["logs/"] = (" ".join(sorted(p.name for p in (data_dir / "logs").iterdir())).encode(), 0)
    return state


@pytest.mark.broker
def test_a_second_stack_on_a_held_data_dir_is_refused_and_names_the_holder(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "stack"
    mqtt_port, http_port = free_port(), free_port()
    first = start_up(data_dir, mqtt_port, http_port, tmp_path / "first.out")
    try:
        wait_up(first, tmp_path / "first.out")
        before = snapshot(data_dir)

        other_mqtt, other_http = free_port(), free_port()
        # Only a whole stack is refused: `tether bridge` and `tether gateway` may join a running
        # one (a standby worker, another gateway); shard-group leases keep the writers apart.
        for argv in (("up", f"--mqtt-port={other_mqtt}", f"--http-port={other_http}"),):
            result = refused(*argv, f"--data-dir={data_dir}")
            assert result.returncode == 2, result.stdout + result.stderr
            assert "Traceback" not in result.stdout + result.stderr
            assert "Tether is up" not in result.stdout
            message = result.stderr.strip()
            assert len(message.splitlines()) == 1, message
            assert f"pid {first.pid}" in message, message
            assert f"mqtt port {mqtt_port}" in message and f"http port {http_port}" in message
            assert str(data_dir.resolve()) in message

        # Nothing the refused ones could have touched changed: broker config, logins, logs.
        assert snapshot(data_dir) == before
        assert first.poll() is None, "the first stack must keep running"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0

    with DataDirLock.acquire(data_dir, "test"):  # released when its holder stopped
        pass


@pytest.mark.broker
def test_the_lock_dies_with_a_killed_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    up = start_up(data_dir, free_port(), free_port(), tmp_path / "up.out")
    try:
        wait_up(up, tmp_path / "up.out")
        with pytest.raises(DataDirBusy):
            DataDirLock.acquire(data_dir, "test")
    finally:
        up.kill()  # SIGKILL: no clean-up code runs; its children get SIGTERM from the kernel
        up.wait(10)

    def free() -> bool:
        try:
            DataDirLock.acquire(data_dir, "test").release()
        except DataDirBusy:
            return False
        return True

    wait_until(free, 30, "the kernel to release the killed stack's lock")


def test_the_lock_is_exclusive_and_says_who_holds_it(tmp_path: Path) -> None:
    with DataDirLock.acquire(tmp_path / "d", "up", mqtt_port=1, http_port=2) as held:
        assert (tmp_path / "d" / LOCK_FILE_NAME).stat().st_mode & 0o777 == 0o600
        with pytest.raises(DataDirBusy) as refusal:
            DataDirLock.acquire(tmp_path / "d", "bridge", mqtt_port=3)
        assert refusal.value.holder == {
            "pid": os.getpid(),
            "command": "up",
            "mqtt_port": 1,
            "http_port": 2,
        }
        assert "(pid" in str(refusal.value) and "tether up, mqtt port 1, http port 2" in str(
            refusal.value
        )
        assert held.fd >= 0
    with DataDirLock.acquire(tmp_path / "d", "bridge"):
        pass


def test_a_child_shares_its_parents_lock_through_the_inherited_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DataDirLock.acquire(tmp_path, "up", mqtt_port=1) as parent:
        inherited = os.dup(parent.fd)  # what a child started with pass_fds=[fd] gets
        monkeypatch.setenv("TETHER_DATA_DIR_LOCK_FD", str(inherited))
        with DataDirLock.acquire(tmp_path, "gateway") as child:  # the same open file: allowed
            assert child.inherited and child.fd == inherited
        # The child's exit leaves the parent's lock and record in place.
        monkeypatch.delenv("TETHER_DATA_DIR_LOCK_FD")
        with pytest.raises(DataDirBusy) as refusal:
            DataDirLock.acquire(tmp_path, "bridge")
        assert refusal.value.holder["command"] == "up"
        # A descriptor of another file gives nothing away.
        other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o600)
        monkeypatch.setenv("TETHER_DATA_DIR_LOCK_FD", str(other))
        try:
            with pytest.raises(DataDirBusy):
                DataDirLock.acquire(tmp_path, "gateway")
        finally:
            os.close(other)
