"""``tether send``, ``status`` and ``provision``: talk to a running stack over HTTP."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx

from tether.protocol import CommandState, parse_time, validate_device_id
from tether.protocol.errors import BadRequest
from tether.protocol.paths import api_path
from tether.wording import plural
from tether_cli.flags import add_flags
from tether_cli.fleet import numbered_ids, provision_fleet
from tether_cli.options import ClientOptions, ProvisionOptions, SendOptions


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, ClientOptions)


class ClientError(BadRequest):
    """What a client command tells its user: a refusal, a bad flag; never a traceback.

    A refusal carries the server's error ``code`` and HTTP ``status``."""


def _client(args: argparse.Namespace) -> httpx.Client:
    if not args.token:
        raise ClientError("no token: pass --token or set TETHER_TOKEN")
    return httpx.Client(
        base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=10
    )


def _check(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    code: str | None = None
    try:
        error = response.json()["error"]
        message = f"{error['code']}: {error['message']}"
        code = str(error["code"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    raise ClientError(
        f"HTTP {response.status_code} {message}", code=code, status=response.status_code
    )


def cmd_send(args: argparse.Namespace) -> int:
    device = validate_device_id(args.device)
    try:
        command_args = json.loads(args.args) if args.args else {}
    except ValueError as exc:
        raise ClientError(f"--args is not JSON: {exc}") from None
    body: dict[str, Any] = {"name": args.name, "args": command_args}
    if args.ttl is not None:
        body["ttl"] = args.ttl
    with _client(args) as client:
        record = _check(client.post(api_path("devices", device, "commands"), json=body))
        print(f"{record['id']} {record['state']}", flush=True)
        hint = offline_hint(client, device, record)
        if hint:
            wait = f"; --wait gives up after {args.timeout:g} s" if args.wait else ""
            print(f"{hint}{wait}", file=sys.stderr, flush=True)
        if not args.wait:
            return 0
        return _follow(client, record, args.timeout)


def outcome_note(record: dict[str, Any]) -> str:
    """What a terminal record says beyond its state: a late outcome, or that one may come."""
    late = record.get("late")
    state = record["state"]
    if late:
        if late["status"] == "received":
            return f"{state}, but the device received it at {late['at']}"
        if late["status"] == state:
            return f"{state}, and the device confirmed it at {late['at']}"
        if late["status"] not in ("succeeded", "failed"):  # rejected, expired, cancelled
            return f"{state}, and the device answered at {late['at']}: {late['status']}, not run"
        return f"{state}, but the device ran it at {late['at']}: {late['status']}"
    handed_over = record.get("attempts", 0) > 0 and record.get("ended_by") != "device"
    if state in ("cancelled", "expired", "undeliverable") and handed_over:
        return (
            f"{state} here, but it had been handed to the broker: the device may still run "
            "it, and its record will say so (late)"
        )
    if state == "timed_out":
        return "timed out here; the device may still finish it, and its record will say so (late)"
    return ""


def offline_hint(client: httpx.Client, device: str, record: dict[str, Any]) -> str | None:
    """``pump-7 is offline; the command waits until it reconnects (no TTL)``, or None if online.

    Best effort: a device the server cannot describe right now gets no hint, not an error.
    """
    response = client.get(api_path("devices", device))
    if not response.is_success or response.json().get("online", True):
        return None
    return f"{device} is offline; the command waits until it reconnects ({ttl_text(record)})"


def ttl_text(record: dict[str, Any]) -> str:
    expires_at = record.get("expires_at")
    if not expires_at:
        return "no TTL"
    ttl = (parse_time(expires_at) - parse_time(record["issued_at"])).total_seconds()
    return f"TTL {ttl:g} s: it expires at {expires_at} if still undelivered"


def _follow(client: httpx.Client, record: dict[str, Any], timeout: float) -> int:
    """Print each hop as the command's record gains it, until a terminal state."""
    shown = {"queued"}
    started = time.monotonic()
    delay = 0.02
    while True:
        for hop, at in record["times"].items():
            if hop not in shown:
                shown.add(hop)
                print(f"{record['id']} {hop} at {at}", flush=True)
        state = CommandState(record["state"])
        if state.is_terminal:
            detail = record["result"] if state is CommandState.SUCCEEDED else record["error"]
            summary = {
                "state": state.value,
                "result" if state is CommandState.SUCCEEDED else "error": detail,
            }
            summary |= {k: record[k] for k in ("cancel", "late") if record.get(k) is not None}
            print(json.dumps(summary))
            note = outcome_note(record)
            if note:
                print(f"{record['id']} {note}", flush=True)
            return 0 if state is CommandState.SUCCEEDED else 1
        if time.monotonic() - started > timeout:
            print(f"{record['id']} still {state.value} after {timeout:g} s", file=sys.stderr)
            return 3
        time.sleep(delay)  # the CLI polls the record; every hop is in it, so none is missed
        delay = min(delay * 1.5, 0.5)
        record = _check(client.get(api_path("commands", record["id"])))


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        fleet = _check(client.get("/api/fleet"))
    print(format_status(fleet))
    return 0


def format_status(fleet: dict[str, Any]) -> str:
    """The terminal view of ``/api/fleet``: broker, fleet, hop latencies, devices to look at."""
    lines = []
    broker = fleet.get("broker", {})
    figures = broker.get("figures", {})
    lines.append(
        f"broker   {'connected' if broker.get('connected') else 'DISCONNECTED'}"
        f"{'  ' + broker['version'] if broker.get('version') else ''}"
    )
    if figures:
        lines.append(
            f"         clients {figures.get('clients_connected', 0):g}  "
            f"msgs/min in {figures.get('messages_received_per_min', 0):g} "
            f"out {figures.get('messages_sent_per_min', 0):g}  "
            f"stored {figures.get('stored_messages', 0):g}  "
            f"dropped {figures.get('publish_dropped_total', 0):g}"
        )
    d = fleet["devices"]
    lines.append(f"devices  {d['total']} total, {d['online']} online, {d['offline']} offline")
    lines.append(f"pending  {plural(fleet['pending'], 'command')}")
    states = ", ".join(f"{k} {v}" for k, v in sorted(fleet.get("commands_by_state", {}).items()))
    lines.append(f"commands {states or 'none yet'}")
    latency = fleet.get("latency_ms", {})
    if latency:
        window = f"hop (last {fleet.get('window_minutes')} min)"
        lines.append(f"\n{window:<24} {'n':>7} {'p50 ms':>9} {'p99 ms':>9}")
        for hop, figure in latency.items():
            p50 = "-" if figure["p50"] is None else f"{figure['p50']:g}"
            p99 = "-" if figure["p99"] is None else f"{figure['p99']:g}"
            lines.append(f"{hop:<24} {figure['count']:>7} {'≤' + p50:>9} {'≤' + p99:>9}")
    for shard in fleet.get("shards", []):
        if not shard.get("ok"):
            lines.append(f"shard {shard['shard']} FAILED: {shard.get('error')}")
    lines += format_workers(fleet.get("workers") or [])
    for title, key, field in (
        ("slowest devices (mean end to end, ms)", "slowest", "mean_end_to_end_ms"),
        ("most pending", "top_pending", "pending"),
        ("most failures (last hour)", "top_failures", "failures"),
    ):
        rows = fleet.get(key) or []
        if rows:
            lines.append(f"\n{title}")
            lines += [f"  {row['device']:<30} {row[field]:>10}" for row in rows]
    return "\n".join(lines)


def format_workers(workers: list[dict[str, Any]]) -> list[str]:
    """One line per shard group: its owner (or ``NO OWNER``), the shards, the lag.

    ``group 0   worker-0 on host pid 41  shards 0,2  lag 0 events  status 1.2 s old``; a silent
    owner (its status too old) is named, with ``SILENT``: another worker takes over."""
    if not workers:
        return []
    unowned = [w for w in workers if w.get("owner") is None or w.get("stale")]
    owners = {w["owner"] for w in workers if w not in unowned}
    summary = f"{plural(len(workers), 'group')}, {plural(len(owners), 'worker')}"
    if unowned:
        summary += f", {len(unowned)} without an owner (taking over)"
    lines = [f"\nworkers  {summary}"]
    for w in sorted(workers, key=lambda w: int(w["group"])):
        if w.get("owner") is None:
            lines.append(f"  group {w['group']:<3} NO OWNER: taking over")
            continue
        where = f" on {w['host']}" if w.get("host") else ""
        pid = f" pid {w['pid']}" if w.get("pid") is not None else ""
        shards = ",".join(str(s) for s in w.get("shards", [])) or "-"
        # absent shards: the owner committed nothing there yet; null: the gateway has no feed
        reported = w.get("events_behind")
        behind = [n for n in (reported or {}).values() if isinstance(n, int)]
        known = isinstance(reported, dict) and (behind or not reported)
        lag = plural(sum(behind), "event") if known else "unknown"
        age = w.get("status_age_seconds")
        status = "" if age is None else f"  status {age:g} s old"
        silent = "  SILENT: taking over" if w.get("stale") else ""
        lines.append(
            f"  group {w['group']:<3} {w['owner']}{where}{pid}  shards {shards}  lag {lag}"
            f"{status}{silent}"
        )
    return lines


def cmd_provision(args: argparse.Namespace) -> int:
    ids = list(args.ids) + (numbered_ids(args.count, args.id_prefix) if args.count else [])
    if not ids:
        raise ClientError("name device ids, or give --count N")
    for device in ids:
        validate_device_id(device)
    with _client(args) as client:
        rows = provision_fleet(client, ids, args.out, rotate=args.rotate)
    print(f"{plural(len(rows), 'device')} ready; credentials in {args.out}")
    return 0


class _RenamedFlag(argparse.Action):
    """An old spelling that still works, with a note on stderr naming the new one."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"tether: {option_string} is now {self.const}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="send a command to a device of a running stack")
    send.add_argument("device")
    send.add_argument("name")
    add_flags(send, SendOptions)
    add_client_flags(send)
    send.set_defaults(handler=cmd_send)

    provision = sub.add_parser(
        "provision", help="provision devices through the API and save their logins to a file"
    )
    provision.add_argument("ids", nargs="*", help="device ids")
    add_flags(provision, ProvisionOptions, only=("count", "id_prefix"))
    provision.add_argument(
        "--prefix",
        dest="id_prefix",
        action=_RenamedFlag,
        const="--id-prefix",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    add_flags(provision, ProvisionOptions, only=("out", "rotate"))
    add_client_flags(provision)
    provision.set_defaults(handler=cmd_provision)

    status = sub.add_parser("status", help="print the fleet and broker figures of a running stack")
    add_client_flags(status)
    status.set_defaults(handler=cmd_status)
