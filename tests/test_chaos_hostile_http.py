"""Chaos, hostile input over HTTP and WebSocket: what the gateway tests leave out.

Covered elsewhere (not repeated): missing/wrong tokens and role escalation on every route
(``test_gateway_api.py::test_every_route_checks_token_and_role``), ids with ``/ + # $``, NUL,
space and 65 characters in paths (``test_bad_device_ids_in_paths``), bad bodies and ``args``
over 64 KiB (``test_bad_send_bodies``), malformed WS frames and oversized ``args`` over WS
(``test_gateway_stream.py::test_websocket_errors_name_the_problem``), bad tokens and cursors
before the upgrade (``test_websocket_refuses_before_upgrading``), a client that never reads
(``test_a_client_that_never_reads_is_cut_off``).

Here: 10 KB and NUL-laden ids on every way in (REST path, REST body, WS frame), WebSocket frames
over 1 MiB and binary frames, 200 slow connections at once, and schemathesis fuzzing the REST
API from ``/openapi.json``. Each keeps a ledger of real commands sent around the attack.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support import store_reader
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.chaos import (
    Fleet,
    PipedGateway,
    check,
    ledger,
    metric,
    record,
    rss_kib,
    runs_by_id,
    settle,
)
from tests.support.gateways import TOKENS, RunningGateway
from tests.support.processes import ADMIN_TOKEN
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

HOSTILE_IDS = [
    "x" * 10_240,
    "a\x00b",
    "\x00",
    "dev/../../etc",
    "+",
    "#",
    "$SYS",
    "dev-1\n",
    "ü" * 5_000,
    "",
]


def provision(api: httpx.Client, *ids: str) -> list[Credentials]:
    out = []
    for device_id in ids:
        body = api.post("/api/devices", json={"id": device_id}).json()
        out.append(Credentials(device_id, body["username"], body["password"]))
    return out


def ws(gateway: RunningGateway, role: Role = Role.OPERATOR) -> ClientConnection:
    return connect(f"{gateway.ws_url}?token={TOKENS[role]}", open_timeout=5, close_timeout=2)


def reply(conn: ClientConnection) -> dict[str, Any]:
    for _ in range(100):
        message: dict[str, Any] = json.loads(conn.recv(timeout=10))
        if message["type"] in ("error", "accepted", "pong"):
            return message
    raise AssertionError("no reply")


def sends(api: httpx.Client, device_id: str, ns: range) -> list[str]:
    out = []
    for n in ns:
        response = api.post(
            f"/api/devices/{device_id}/commands", json={"name": "count", "args": {"n": n}}
        )
        assert response.status_code == 202, response.text
        out.append(response.json()["id"])
    return out


def close_ledger(fault: str, data_dir: Path, fleet: Fleet, accepted: list[str]) -> Any:
    settle(data_dir, 20, accepted)
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    return ledger(fault, data_dir, runs, accepted=accepted, strays=strays, only=accepted)


@pytest.fixture
def fleet(broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path) -> Iterator[Fleet]:
    with gateway.client(Role.ADMIN) as api:
        running = Fleet(broker, provision(api, "calm-0"), tmp_path)
    running.start()
    yield running
    running.stop()


def test_hostile_device_ids_on_every_way_in(gateway: RunningGateway, fleet: Fleet) -> None:
    data_dir = gateway.bridge.store.data_dir
    answers: list[tuple[str, httpx.Response, set[tuple[int, str]]]] = []
    ws_wrong: list[str] = []
    with gateway.client(Role.ADMIN) as api, ws(gateway) as conn:
        accepted = sends(api, "calm-0", range(5))
        devices_before = [d["id"] for d in api.get("/api/devices").json()["devices"]]
        for bad in HOSTILE_IDS:
            quoted = quote(bad, safe="")
            in_path = [
                ("GET", f"/api/devices/{quoted}", None),
                ("DELETE", f"/api/devices/{quoted}", None),
                ("GET", f"/api/devices/{quoted}/commands", None),
                ("POST", f"/api/devices/{quoted}/commands", {"name": "echo"}),
            ]
            for method, path, body in [
                *(in_path if bad else []),  # "" in a path is /api/devices/, not an id
                ("POST", "/api/devices", {"id": bad}),
            ]:
                response = api.request(method, path, json=body)
                # Refused as a bad id; a "/" in it can only miss every route.
                expected = {(400, "bad_request")} | ({(404, "not_found")} if "/" in bad else set())
                answers.append((f"{method} {path[:40]}", response, expected))
            conn.send(json.dumps({"type": "send", "ref": "r", "device": bad, "name": "echo"}))
            error = reply(conn)
            ws_code = error["error"]["code"] if error["type"] == "error" else error["type"]
            if ws_code != "bad_request":
                ws_wrong.append(f"WS send {bad[:20]!r}: {ws_code}")
        devices_after = [d["id"] for d in api.get("/api/devices").json()["devices"]]
        accepted += sends(api, "calm-0", range(5, 10))
    outcome = close_ledger(
        "HTTP/WS: ids with NUL, / + # $, newline, 10 KB (path, body, WS frame)",
        data_dir,
        fleet,
        accepted,
    ).note(f"{len(answers)} REST + {len(HOSTILE_IDS)} WS hostile requests, each a 400 bad_request")
    for what, response, expected in answers:
        try:
            got = (response.status_code, response.json()["error"]["code"])
        except (ValueError, KeyError):
            got = (response.status_code, response.text[:60])
        if got not in expected:
            outcome.unexpected[what] = f"answered {got}, expected {sorted(expected)}"
    for wrong in ws_wrong:
        outcome.unexpected[wrong] = "expected bad_request"
    if devices_after != devices_before:
        outcome.unexpected["devices"] = "a hostile request changed the device list"
    check(outcome)


def read_until_closed(conn: ClientConnection) -> None:
    for _ in range(100):
        conn.recv(timeout=10)


def test_websocket_frame_over_1_mib_is_closed_1009(gateway: RunningGateway, fleet: Fleet) -> None:
    data_dir = gateway.bridge.store.data_dir
    codes = []
    with gateway.client(Role.OPERATOR) as api:
        accepted = sends(api, "calm-0", range(5))
        for size in (1024 * 1024 + 1, 4 * 1024 * 1024):
            with ws(gateway) as conn:
                conn.send("x" * size)
                with pytest.raises(ConnectionClosed) as closed:
                    read_until_closed(conn)
                assert closed.value.rcvd is not None
                codes.append(closed.value.rcvd.code)
        with ws(gateway) as conn:  # one just under the cap is read, and refused politely
            big = {"type": "send", "ref": "big", "device": "calm-0", "name": "echo"}
            conn.send(json.dumps({**big, "args": {"b": "x" * (1024 * 1024 - 200)}}))
            under = reply(conn)
            conn.send(json.dumps({"type": "ping", "ref": "alive"}))
            assert reply(conn) == {"type": "pong", "ref": "alive"}
        accepted += sends(api, "calm-0", range(5, 10))
    outcome = close_ledger("WS: frames of 1 MiB + 1 and 4 MiB", data_dir, fleet, accepted).note(
        f"close codes {codes}; 1 MiB - 200 B frame → {under['error']['code']}"
    )
    check(outcome)
    assert codes == [1009, 1009]
    assert under["error"]["code"] == "too_large"


def test_a_binary_websocket_frame_gets_a_clear_refusal(
    gateway: RunningGateway, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """The contract's frames are JSON text: a binary frame gets a clear refusal (an error frame,
    or close 1003), not an internal error with a traceback in the log. (Found by this suite;
    fixed in a4fd31f.)"""
    caplog.set_level(logging.ERROR)
    data_dir = gateway.bridge.store.data_dir
    with gateway.client(Role.OPERATOR) as api:
        accepted = sends(api, "calm-0", range(3))
        with ws(gateway) as conn:
            conn.send(b'{"type": "ping", "ref": "binary"}')
            try:
                answer = json.loads(conn.recv(timeout=5))
                while answer.get("type") == "event":  # the earlier sends' events, still live
                    answer = json.loads(conn.recv(timeout=5))
                closed = None
            except ConnectionClosed as exc:
                answer, closed = None, exc.rcvd.code if exc.rcvd else None
        accepted += sends(api, "calm-0", range(3, 6))
    outcome = close_ledger("WS: a binary frame", data_dir, fleet, accepted)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    clear = (answer is not None and answer.get("type") == "error") or closed == 1003
    if not clear:
        outcome.unexpected["binary frame"] = f"answer {answer}, close code {closed}"
    if errors:
        outcome.unexpected["server log"] = f"ERROR logged: {errors[:2]}"
    outcome.note(f"answer: {answer['error']['code'] if answer else f'close {closed}'}")
    check(outcome)


def open_sockets(pid: int) -> int:
    """The process's open sockets (its SQLite readers open files lazily: not counted)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def test_many_slow_connections_at_once(
    broker: BrokerHandle, piped_gateway: PipedGateway, tmp_path: Path
) -> None:
    """200 loopback connections at once to a gateway process: 80 send half a request and stop,
    60 connect and say nothing, 60 upgrade to WebSocket and never read. Meanwhile a normal
    client is served at once, its commands run once, memory stays bounded, and every socket is
    released once the clients go."""
    pid = piped_gateway.pid
    with piped_gateway.api() as api:
        fleet = Fleet(broker, provision(api, "calm-0"), tmp_path)
    fleet.start()
    slow: list[socket.socket] = []
    try:
        with piped_gateway.api() as api:
            accepted = sends(api, "calm-0", range(5))
            rss_before, sockets_before = rss_kib(pid), open_sockets(pid)
            for n in range(200):
                sock = socket.create_connection(("127.0.0.1", piped_gateway.http_port), 5)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                slow.append(sock)
                if n < 80:
                    sock.sendall(b"POST /api/devices/calm-0/commands HTTP/1.1\r\nHost: x\r\n")
                elif n >= 140:
                    sock.sendall(
                        (
                            f"GET /ws?token={ADMIN_TOKEN} HTTP/1.1\r\nHost: x\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n"
                        ).encode()
                    )
            wait_until(lambda: open_sockets(pid) >= sockets_before + 200, 10, "all 200 accepted")
            wait_until(lambda: metric(api, "tether_stream_clients") >= 60, 10, "60 WS subscribers")
            slowest = 0.0
            for n in range(5, 25):  # served while they hang on
                response = api.post(
                    "/api/devices/calm-0/commands", json={"name": "count", "args": {"n": n}}
                )
                assert response.status_code == 202
                accepted.append(response.json()["id"])
                slowest = max(slowest, response.elapsed.total_seconds())
            health = api.get("/healthz")
            rss_during = rss_kib(pid)
            outcome = close_ledger(
                "HTTP: 200 slow connections at once (half requests, silent, WS never reading)",
                tmp_path / "store",
                fleet,
                accepted,
            )
            for sock in slow:
                sock.close()
            slow.clear()
            wait_until(
                lambda: open_sockets(pid) <= sockets_before + 2, 15, "the 200 sockets released"
            )
            wait_until(lambda: metric(api, "tether_stream_clients") == 0, 10, "subscribers freed")
            outcome.note(
                f"slowest send {slowest * 1000:.0f} ms; RSS {rss_before} → {rss_during} KiB; "
                f"sockets {sockets_before} → +200 → {open_sockets(pid)}; "
                "60 WS subscribers → 0"
            )
    finally:
        for sock in slow:
            sock.close()
        fleet.stop()
    check(outcome)
    assert health.status_code == 200 and slowest < 2.0
    assert rss_during - rss_before < 64 * 1024, (rss_before, rss_during)


def _only_neutral_mutations(described: str) -> bool:
    """What a case made invalid is only an extra query or header key (plain HTTP ignores
    those), or the Authorization header, which every request here carries, valid, anyway."""
    lines = [line.strip("- ").strip() for line in described.splitlines() if line.strip()]
    return bool(lines) and all(
        (line.startswith(("query", "header")) and "additionalProperties" in line)
        or "Authorization" in line
        for line in lines
    )


class Fuzz:
    """schemathesis over the live ``/openapi.json``, for each operation:

    1. the coverage phase: schemathesis' systematic cases (boundary values, wrong types,
       missing and extra fields), valid and invalid, the same every run;
    2. the fuzzing phase: random valid, then invalid, input, a bounded number of examples each
       (derandomized: seeded from this code).

    Where an operation has path parameters, ``known`` ids (an existing device and command)
    replace the generated ones whenever the path is not what a case makes invalid, so queries
    and bodies reach the code behind the lookup (generated ids mostly end in 404). DELETE keeps
    generated ids: it would revoke the target.
    """

    def __init__(
        self,
        gateway: RunningGateway,
        examples: int,
        known: dict[str, str],
    ) -> None:
        import schemathesis

        self.gateway = gateway
        self.examples = examples
        self.known = known
        self.schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
        self.headers = {"Authorization": f"Bearer {TOKENS[Role.ADMIN]}"}
        self.seen: Counter[tuple[str, str, str, int]] = Counter()
        self.failures: dict[str, str] = {}  # check failure -> one example
        self.created_devices: set[str] = set()
        self.created_commands: set[str] = set()
        self.no_invalid_input: list[str] = []
        self.neutral = 0

    def run(self, checks: list[Any] | None) -> Fuzz:
        import schemathesis
        from hypothesis.errors import Unsatisfiable
        from schemathesis.core.result import Ok

        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
        for result in self.schema.get_all_operations():
            assert isinstance(result, Ok), result  # the schema loads in full
            operation = result.ok()
            if operation.path == "/api/events":
                continue  # an endless stream: the stream tests cover it
            config = self.schema.config.generation_for(operation=operation, phase="coverage")
            cases = self.schema.iter_coverage_cases(
                operation, generation_modes=modes, generation_config=config
            )
            for _, case in zip(range(200), cases, strict=False):
                self._fix_path(operation, case)
                self._send(case, case.meta.generation.mode if case.meta else modes[0], checks)
            for mode in modes:
                try:
                    self._fuzz(operation, mode, checks)
                except Unsatisfiable:
                    assert mode.is_negative, operation.label
                    self.no_invalid_input.append(operation.label)  # nothing to negate
        return self

    def _fix_path(self, operation: Any, case: Any) -> None:
        described = (case.meta.phase.data.description or "") if case.meta else ""
        names = set(case.path_parameters or {})
        fixed = {n: v for n, v in self.known.items() if n in names}
        if fixed and "path" not in described.lower() and operation.method.upper() != "DELETE":
            case.path_parameters = {**case.path_parameters, **fixed}

    def _fuzz(self, operation: Any, mode: Any, checks: list[Any] | None) -> None:
        from hypothesis import HealthCheck, given, settings

        @settings(
            max_examples=self.examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            self._fix_path(operation, case)
            self._send(case, mode, checks)

        fuzz()

    def _send(self, case: Any, mode: Any, checks: list[Any] | None) -> None:
        from schemathesis.core import NotSet

        response = case.call(base_url=self.gateway.url, headers=self.headers, timeout=10)
        status = response.status_code
        self.seen[(mode.value, case.method, case.operation.path, status)] += 1
        if status == 201 and case.operation.path == "/api/devices":
            self.created_devices.add(response.json()["id"])
        if status == 202:
            self.created_commands.add(response.json()["id"])
        described = (case.meta.phase.data.description or "") if case.meta else ""
        if mode.is_negative and status < 300 and _only_neutral_mutations(described):
            self.neutral += 1  # in fact a valid request
            return
        try:
            case.validate_response(response, checks=checks)
        except BaseException as exc:  # schemathesis raises a FailureGroup (an ExceptionGroup)
            title = " ".join(line for line in str(exc).splitlines() if line.startswith("- "))
            body = "" if isinstance(case.body, NotSet) else f" body={case.body!r}"
            example = (
                f"{mode.value} {case.method} → {status}: path={case.path_parameters} "
                f"query={case.query}{body}"
            )
            self.failures.setdefault(f"{title} on {case.operation.path}", example[:200])

    @property
    def requests(self) -> int:
        return sum(self.seen.values())

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.seen.items() if key[3] >= 500)


def test_schemathesis_fuzzes_the_rest_api(gateway: RunningGateway, fleet: Fleet) -> None:
    """Valid and invalid requests generated from ``/openapi.json``: never a 5xx, never a 2xx for
    an invalid request (schemathesis' ``negative_data_rejection``, which lets a server ignore
    unknown query parameters and headers), and the store changes only by what 2xx answers say
    it did."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection

    store = gateway.bridge.store
    with gateway.client(Role.ADMIN) as api:
        accepted = sends(api, "calm-0", range(5))
        provision(api, "fuzz-0")  # no agent: what the fuzzer sends it stays queued
    known = {"device_id": "fuzz-0", "command_id": accepted[0]}
    fuzz = Fuzz(gateway, 20, known).run([not_a_server_error, negative_data_rejection])
    with gateway.client(Role.ADMIN) as api:
        accepted += sends(api, "calm-0", range(5, 10))
        alive = api.get("/healthz").status_code
        devices = {d["id"] for d in api.get("/api/devices").json()["devices"]}
    outcome = close_ledger(
        "HTTP: schemathesis fuzzing of the REST API (valid + invalid input)",
        store.data_dir,
        fleet,
        accepted,
    ).note(
        f"{fuzz.requests} requests ({len(fuzz.seen)} kinds), {fuzz.server_errors} 5xx, "
        f"{len(fuzz.failures)} check failures (5xx or invalid input accepted); "
        f"{fuzz.neutral} 'invalid' only by an unknown query key or the token, answered 2xx"
    )
    stored = store_reader.commands(store.data_dir)
    for command_id in set(stored) - set(accepted) - fuzz.created_commands:
        outcome.unexpected[command_id] = "a command no 2xx answer accounts for"
    for device_id in devices - {"calm-0", "fuzz-0"} - fuzz.created_devices:
        outcome.unexpected[f"device {device_id}"] = "a device no 201 answer accounts for"
    for failure, example in fuzz.failures.items():
        outcome.unexpected[failure] = example
    check(outcome)
    assert alive == 200 and fuzz.requests >= 500 and fuzz.server_errors == 0


def test_schemathesis_the_openapi_schema_matches_the_server(
    gateway: RunningGateway, fleet: Fleet
) -> None:
    """schemathesis' full default checks (status codes, response schemas, content types,
    valid input accepted...): the published schema must describe the server exactly."""
    with gateway.client(Role.ADMIN) as api:
        accepted = sends(api, "calm-0", range(3))
        provision(api, "fuzz-0")
    fuzz = Fuzz(gateway, 20, {"device_id": "fuzz-0", "command_id": accepted[0]}).run(None)
    outcome = close_ledger(
        "HTTP: /openapi.json conformance (schemathesis default checks)",
        gateway.bridge.store.data_dir,
        fleet,
        accepted,
    ).note(f"{fuzz.requests} requests; {len(fuzz.failures)} kinds of mismatch")
    for failure, example in fuzz.failures.items():
        outcome.unexpected[failure] = example
    record(outcome)
    assert outcome.clean, outcome.details(limit=12)
