"""No token in the logs: a session of use against a real ``tether up`` (WebSocket and SSE with
``?token=``, REST with a Bearer header, a wrong token too), then every file under ``logs/`` is
searched for the tokens and checked to be readable by its owner only."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from mosquitto.process import free_port
from tests.support.waiting import wait_until
from tether_cli.log_redaction import REDACTED, RedactingFilter, redact

TOKEN = "log-secrets-admin-token-0123456789"
WRONG = "log-secrets-wrong-token-9876543210"


@pytest.mark.broker
def test_a_session_of_use_leaves_no_token_in_the_logs_and_the_logs_private(
    tmp_path: Path,
) -> None:
    data_dir, http_port = tmp_path / "stack", free_port()
    url = f"http://127.0.0.1:{http_port}"
    out = tmp_path / "up.out"
    with out.open("wb") as log:
        up = subprocess.Popen(
            [
                sys.executable, "-m", "tether_cli", "up",
                f"--data-dir={data_dir}",
                f"--mqtt-port={free_port()}",
                f"--http-port={http_port}",
                "--shards=2",
                "--simulate=1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TETHER_ADMIN_TOKEN": TOKEN},
        )  # fmt: skip
    try:

        def is_up() -> bool:
            assert up.poll() is None, out.read_text()
            return "Tether is up." in out.read_text()

        wait_until(is_up, 90, "tether up")
        ws_url = f"ws://127.0.0.1:{http_port}/ws"
        with connect(f"{ws_url}?token={TOKEN}", open_timeout=10, close_timeout=2) as ws:
            ws.send(
                json.dumps({"type": "send", "ref": "r1", "device": "sim-00001", "name": "echo"})
            )
            while json.loads(ws.recv(timeout=10))["type"] != "accepted":
                pass
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{ws_url}?token={WRONG}", open_timeout=10, close_timeout=2)
        assert refused.value.response.status_code == 401
        with httpx.stream("GET", f"{url}/api/events?token={TOKEN}", timeout=10) as events:
            assert events.status_code == 200
            next(events.iter_lines())
        assert httpx.get(f"{url}/api/events?token={WRONG}", timeout=10).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        sent = httpx.post(
            f"{url}/api/devices/sim-00001/commands",
            json={"name": "echo", "args": {}},
            headers=headers,
            timeout=10,
        )
        assert sent.status_code == 202, sent.text
        assert httpx.get(f"{url}/api/fleet", headers=headers, timeout=10).status_code == 200
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0, out.read_text()

    logs = data_dir / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    files = sorted(p for p in logs.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert names >= {"gateway-0.log", "worker-0.log", "mosquitto.log", "simulator.log"}
    gateway_log = "".join(p.read_text() for p in files if p.name.startswith("gateway-"))
    assert "WebSocket /ws?token=" in gateway_log, "the handshake line is logged, redacted"
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        text = path.read_text(errors="replace")
        assert TOKEN not in text, f"the admin token is in {path}"
        assert WRONG not in text, f"a rejected token is in {path}"


def test_redact_hides_query_tokens_bearer_headers_and_known_secrets() -> None:
    line = (
        '127.0.0.1:5 - "WebSocket /ws?last_event_id=c1&token=abc%2Bdef&x=1" [accepted] '
        "headers={'authorization': 'Bearer s3cr3t.t0ken'} plain-known-secret"
    )
    cleaned = redact(line, ["plain-known-secret"])
    assert "abc" not in cleaned and "s3cr3t" not in cleaned and "plain-known" not in cleaned
    assert f"token={REDACTED}&x=1" in cleaned and "last_event_id=c1" in cleaned
    assert f"Bearer {REDACTED}" in cleaned


def test_the_filter_rewrites_arguments_and_tracebacks() -> None:
    try:
        raise ValueError(f"bad request /api/events?token={TOKEN}")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.INFO, __file__, 1, '"GET %s"', ("/x?token=abc",), None
        )
        record.exc_info = sys.exc_info()
    assert RedactingFilter([TOKEN]).filter(record)
    formatted = logging.Formatter().format(record)
    assert TOKEN not in formatted and "abc" not in formatted
    assert f"/x?token={REDACTED}" in formatted
