"""An open-loop WebSocket load generator for the gateway's ``/ws``.

Open loop: command ``i`` of a step is due at ``start + i / rate``; it is sent then whether or not
earlier commands were answered, and its latency is measured from that scheduled time (so a
stalled generator or server cannot hide latency: no coordinated omission). Each command is an
``echo`` whose args carry its number (``{"r": n}``); the stored record, which every event
carries, includes the args, so each ``succeeded`` event names its command without a lookup.

Frames are classified by prefix and a regular expression: the client must keep up with several
frames per command (accepted, then queued, sent, delivered, succeeded events).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _common import summarize_ms
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TERMINAL = {
    "succeeded",
    "failed",
    "rejected",
    "expired",
    "cancelled",
    "undeliverable",
    "timed_out",
}
_EVENT_RE = re.compile(r'"args":\{"r":(\d+)\},"state":"([a-z_]+)"')
_CURSOR_RE = re.compile(r'^\{"type":"event","id":"([^"]+)"')
_REF_RE = re.compile(r'"ref":(\d+)')
_CODE_RE = re.compile(r'"code":"([a-z_]+)"')
_TIMES_RE = re.compile(
    r'"times":\{"queued":"([^"]+)"(?:,"sent":"([^"]+)")?(?:,"delivered":"([^"]+)")?'
    r'(?:,"[a-z_]+":"([^"]+)")?\}'
)
HOPS = ("ingress", "queued_to_sent", "sent_to_delivered", "delivered_to_final", "egress")


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


now = time.perf_counter


@dataclass
class Tracker:
    """What happened to each command number (``ref``)."""

    scheduled: dict[int, float] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)
    accepted: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    states: dict[str, dict[int, float]] = field(default_factory=dict)  # state -> ref -> first seen
    terminal: dict[int, tuple[float, str]] = field(default_factory=dict)
    server_times: dict[int, tuple[str | None, ...]] = field(default_factory=dict)
    wall_at_terminal: dict[int, float] = field(default_factory=dict)
    duplicate_terminal: int = 0
    frames: int = 0
    events: int = 0
    presence_online_at: float | None = None
    cursors: list[str] | None = None  # every event's cursor, when asked for
    datas: list[str] | None = None  # every event's data JSON, when asked for


class WsLoad:
    def __init__(
        self,
        url: str,
        *,
        keep_cursors: bool = False,
        keep_data: bool = False,
        track_states: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.t = Tracker()
        if keep_cursors:
            self.t.cursors = []
        if keep_data:
            self.t.datas = []
        self.track_states = track_states
        for s in track_states:
            self.t.states[s] = {}
        self.ws: ClientConnection | None = None
        self.closed: tuple[int | None, str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self.last_cursor: str | None = None

    async def open(self, cursor: str | None = None) -> None:
        url = self.url + (f"&last_event_id={cursor}" if cursor else "")
        self.ws = await connect(
            url,
            compression=None,
            max_size=2**22,
            max_queue=4096,
            open_timeout=30,
            ping_interval=None,
        )
        self.closed = None
        self._reader = asyncio.create_task(self._read(self.ws))

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader

    async def _read(self, ws: ClientConnection) -> None:
        t = self.t
        track = self.track_states
        try:
            async for msg in ws:
                at = now()
                t.frames += 1
                assert isinstance(msg, str)
                if msg.startswith('{"type":"event"'):
                    t.events += 1
                    if t.cursors is not None or t.datas is not None:
                        m = _CURSOR_RE.match(msg)
                        if m:
                            self.last_cursor = m.group(1)
                            if t.cursors is not None:
                                t.cursors.append(m.group(1))
                        if t.datas is not None:
                            t.datas.append(msg[msg.index('"data":') + 7 : -1])
                    m2 = _EVENT_RE.search(msg)
                    if m2 is not None:
                        state = m2.group(2)
                        ref = int(m2.group(1))
                        if state in TERMINAL:
                            if ref in t.terminal:
                                t.duplicate_terminal += 1
                            else:
                                t.terminal[ref] = (at, state)
                                t.wall_at_terminal[ref] = time.time()
                                m4 = _TIMES_RE.search(msg)
                                if m4 is not None:
                                    t.server_times[ref] = m4.groups()
                                self._progress.set()
                        elif state in track:
                            t.states[state].setdefault(ref, at)
                            self._progress.set()
                    elif (
                        t.presence_online_at is None
                        and '"kind":"presence"' in msg
                        and '"online":true' in msg
                    ):
                        t.presence_online_at = at
                    self._progress.set()
                elif msg.startswith('{"type":"accepted"'):
                    m3 = _REF_RE.search(msg)
                    if m3:
                        t.accepted[int(m3.group(1))] = at
                elif msg.startswith('{"type":"error"'):
                    m3 = _REF_RE.search(msg)
                    code = _CODE_RE.search(msg)
                    if m3:
                        t.errors[int(m3.group(1))] = code.group(1) if code else "?"
                        self._progress.set()
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self.closed = (rcvd.code if rcvd else None, rcvd.reason if rcvd else str(exc))
        else:
            rcvd = ws.close_frame if hasattr(ws, "close_frame") else None
            self.closed = (getattr(rcvd, "code", None), getattr(rcvd, "reason", ""))
        finally:
            self._progress.set()

    async def send_cmd(self, ref: int, device: str) -> None:
        assert self.ws is not None
        await self.ws.send(
            f'{{"type":"send","ref":{ref},"device":"{device}","name":"echo","args":{{"r":{ref}}}}}'
        )

    async def run_open_loop(
        self, first_ref: int, count: int, rate: float, devices: list[str]
    ) -> dict[str, Any]:
        """Send ``count`` commands at ``rate``/s, ref ``first_ref``..; returns send statistics."""
        t = self.t
        start = now() + 0.02
        i = 0
        max_lag = 0.0
        nd = len(devices)
        while i < count and self.closed is None:
            due = min(count, int((now() - start) * rate) + 1)
            while i < due and self.closed is None:
                ref = first_ref + i
                sched = start + i / rate
                t.scheduled[ref] = sched
                try:
                    await self.send_cmd(ref, devices[ref % nd])
                except ConnectionClosed:
                    break
                sent = now()
                t.sent_at[ref] = sent
                max_lag = max(max_lag, sent - sched)
                i += 1
            if i < count:
                delay = start + i / rate - now()
                await asyncio.sleep(max(0.0, delay))
        last = t.sent_at.get(first_ref + i - 1, start)
        first = t.sent_at.get(first_ref, start)
        return {
            "sent": i,
            "send_seconds": round(last - first, 3),
            "achieved_send_rate": round((i - 1) / (last - first), 1)
            if i > 1 and last > first
            else None,
            "max_send_lag_ms": round(max_lag * 1000, 2),
            "start": start,
        }

    async def wait_terminal(self, refs: range, within: float) -> bool:
        """Until every ref is terminal or refused, the connection closed, or ``within`` s."""
        deadline = now() + within
        t = self.t
        while True:
            if all(r in t.terminal or r in t.errors for r in refs):
                return True
            if self.closed is not None or now() > deadline:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(0.2, deadline - now() + 0.01))

    async def wait_state(self, state: str, refs: range, within: float) -> bool:
        deadline = now() + within
        seen = self.t.states[state]
        while True:
            if all(r in seen or r in self.t.terminal for r in refs):
                return True
            if self.closed is not None or now() > deadline:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.2)

    def step_report(
        self, refs: range, send: dict[str, Any], rate: float, dup_before: int = 0
    ) -> dict[str, Any]:
        t = self.t
        lat = []
        lat_actual = []
        acc = []
        by_state: dict[str, int] = {}
        last_done = 0.0
        for r in refs:
            if r in t.accepted and r in t.scheduled:
                acc.append(t.accepted[r] - t.scheduled[r])
            if r in t.terminal:
                at, state = t.terminal[r]
                by_state[state] = by_state.get(state, 0) + 1
                last_done = max(last_done, at)
                if state == "succeeded":
                    lat.append(at - t.scheduled[r])
                    lat_actual.append(at - t.sent_at[r])
        errors: dict[str, int] = {}
        for r in refs:
            if r in t.errors:
                errors[t.errors[r]] = errors.get(t.errors[r], 0) + 1
        hops: dict[str, list[float]] = {h: [] for h in HOPS}
        wall_offset = time.time() - now()  # perf_counter -> epoch seconds
        for r in refs:
            st = t.server_times.get(r)
            if st is None or r not in t.scheduled:
                continue
            q, se, de, fi = (_epoch(x) for x in st)
            if q is not None:
                hops["ingress"].append(q - (t.scheduled[r] + wall_offset))
            if q is not None and se is not None:
                hops["queued_to_sent"].append(se - q)
            if se is not None and de is not None:
                hops["sent_to_delivered"].append(de - se)
            if de is not None and fi is not None:
                hops["delivered_to_final"].append(fi - de)
            if fi is not None:
                hops["egress"].append(t.wall_at_terminal[r] - fi)
        n_accepted = sum(1 for r in refs if r in t.accepted)
        lost = sum(1 for r in refs if r in t.accepted and r not in t.terminal)
        unanswered = sum(
            1 for r in refs if r in t.sent_at and r not in t.accepted and r not in t.errors
        )
        done = sum(by_state.values())
        span = last_done - send["start"] if last_done else 0.0
        return {
            "offered_rate": rate,
            **{k: v for k, v in send.items() if k != "start"},
            "accepted": n_accepted,
            "errors": errors,
            "terminal": by_state,
            "lost": lost,
            "unanswered": unanswered,
            "duplicate_terminal_events": t.duplicate_terminal - dup_before,
            "completion_rate": round(done / span, 1) if span > 0 else None,
            "latency_from_schedule": summarize_ms(lat),
            "latency_from_actual_send": summarize_ms(lat_actual),
            "accept_latency": summarize_ms(acc),
            "hops": {
                h: {k: v for k, v in summarize_ms(vals).items() if k in ("p50_ms", "p99_ms")}
                for h, vals in hops.items()
            },
            "ws_closed": self.closed,
        }


def sustained(step: dict[str, Any]) -> bool:
    """Everything terminal and succeeded, nothing lost, refused or duplicated, the generator kept
    the schedule (97 %), and commands completed at 95 % of the offered rate (no backlog)."""
    rate = step["offered_rate"]
    ok_states = set(step["terminal"]) <= {"succeeded"}
    return bool(
        step["sent"] == step.get("planned", step["sent"])
        and step["lost"] == 0
        and step["unanswered"] == 0
        and not step["errors"]
        and ok_states
        and step["terminal"].get("succeeded", 0) == step["sent"]
        and step.get("duplicate_runs", 0) == 0
        and step["duplicate_terminal_events"] == 0
        and (step["achieved_send_rate"] or 0) >= 0.97 * rate
        and (step["completion_rate"] or 0) >= 0.95 * rate
        and step["ws_closed"] is None
    )
