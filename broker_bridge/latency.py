"""Hop latencies and state counts over a sliding window, in fixed log-scale buckets (pure).

Recorded when a transition is committed; read by ``/api/fleet`` (p50/p99 over the window) and
``/metrics`` (cumulative histograms). Bounded memory: ``window_minutes`` slots of one histogram
per hop, whatever the load.

Two bucket sets: :data:`BOUNDS` (three per decade) are the Prometheus buckets; the window uses
:data:`FINE_BOUNDS` (ten per decade) and reports quantiles interpolated inside a bucket, clamped
to the smallest and largest value seen, so ``p50`` is an estimate of the value (within a few per
cent), not the upper bound of a coarse bucket.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.protocol.service import HopHistogram

HOPS = ("accepted_to_sent", "sent_to_delivered", "delivered_to_final", "end_to_end")
# Upper bounds in seconds: 0.5 ms to 10 min, three per decade.
BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    600.0,
)
# Upper bounds in seconds for quantile estimates: 0.1 ms to 1,000 s, ten per decade (a bucket is
# 26 % wide, so an interpolated value is off by a few per cent at most).
FINE_BOUNDS: tuple[float, ...] = tuple(
    float(f"{10 ** (exponent / 10):.3g}") for exponent in range(-40, 31)
)


def interpolated_quantile(
    counts: list[int],
    bounds: tuple[float, ...],
    q: float,
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    """The q-quantile of a bucketed distribution, interpolated inside its bucket (pure).

    ``counts[i]`` holds values ``≤ bounds[i]`` (the last count: beyond the last bound). Inside a
    bucket the value is interpolated geometrically (the bounds are log-spaced; the first bucket,
    from 0, linearly). ``low``/``high``, the smallest and largest values seen when known, clamp
    the estimate and stand in for the open ends. None without values."""
    n = sum(counts)
    if n == 0:
        return None
    rank = min(max(q, 0.0), 1.0) * n
    seen = 0
    value = bounds[-1]
    for i, count in enumerate(counts):
        if count == 0 or seen + count < rank:
            seen += count
            continue
        fraction = (rank - seen) / count
        lower = bounds[i - 1] if i > 0 else 0.0
        upper = bounds[i] if i < len(bounds) else (high if high is not None else bounds[-1])
        upper = max(upper, lower)
        if lower > 0 and upper > lower:
            value = lower * (upper / lower) ** fraction
        else:
            value = lower + (upper - lower) * fraction
        break
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value


@dataclass
class Histogram:
    bounds: tuple[float, ...] = BOUNDS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.n += 1
        self.low = seconds if self.low is None else min(self.low, seconds)
        self.high = seconds if self.high is None else max(self.high, seconds)

    def add_bucket(self, index: int, count: int, low: float, high: float, total: float) -> None:
        """``count`` values already bucketed (``index`` into :attr:`bounds`), e.g. by SQL."""
        self.counts[index] += count
        self.total += total
        self.n += count
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def merge(self, other: Histogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with other buckets")
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.total += other.total
        self.n += other.n
        for value in (other.low, other.high):
            if value is not None:
                self.low = value if self.low is None else min(self.low, value)
                self.high = value if self.high is None else max(self.high, value)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated within its bucket and clamped to the values seen."""
        return interpolated_quantile(self.counts, self.bounds, q, self.low, self.high)


@dataclass
class _Slot:
    minute: int
    hops: dict[str, Histogram] = field(
        default_factory=lambda: {h: Histogram(FINE_BOUNDS) for h in HOPS}
    )
    states: dict[str, int] = field(default_factory=dict)


class LatencyWindow:
    def __init__(self, window_minutes: int = 5, clock: Callable[[], float] = time.time) -> None:
        self.window_minutes = window_minutes
        self._clock = clock
        self._slots: list[_Slot] = []
        self._forever = {h: Histogram() for h in HOPS}  # cumulative, for Prometheus
        self._lock = threading.Lock()

    def _slot(self) -> _Slot:
        minute = int(self._clock() // 60)
        if not self._slots or self._slots[-1].minute != minute:
            self._slots.append(_Slot(minute))
            del self._slots[: -self.window_minutes]
        return self._slots[-1]

    def record(self, state: str, hops: dict[str, float]) -> None:
        with self._lock:
            slot = self._slot()
            slot.states[state] = slot.states.get(state, 0) + 1
            for hop, seconds in hops.items():
                slot.hops[hop].add(seconds)
                self._forever[hop].add(seconds)

    def summary(self) -> dict[str, object]:
        """p50/p99 per hop over the window (ms), and transitions per state per minute."""
        with self._lock:
            oldest = int(self._clock() // 60) - self.window_minutes + 1
            live = [s for s in self._slots if s.minute >= oldest]
            merged = {h: Histogram(FINE_BOUNDS) for h in HOPS}
            for slot in live:
                for hop, histogram in slot.hops.items():
                    merged[hop].merge(histogram)
            per_minute = [{"minute": s.minute * 60, "states": dict(s.states)} for s in live]
        return {
            "window_minutes": self.window_minutes,
            "latency_ms": {
                hop: {
                    "count": h.n,
                    "p50": _ms(h.quantile(0.50)),
                    "p99": _ms(h.quantile(0.99)),
                    "mean": round(h.total / h.n * 1000, 3) if h.n else None,
                }
                for hop, h in merged.items()
            },
            "states_per_minute": per_minute,
        }

    def export(self) -> dict[str, Any]:
        """This window as JSON-ready data (for an owner's status): :meth:`absorb` adds it to
        another window, so a gateway shows the workers' figures without decoding events."""
        with self._lock:
            return {
                "slots": [
                    {
                        "minute": slot.minute,
                        "states": dict(slot.states),
                        "hops": {h: _export(hist) for h, hist in slot.hops.items() if hist.n},
                    }
                    for slot in self._slots
                ],
                "forever": {h: _export(hist) for h, hist in self._forever.items() if hist.n},
            }

    def absorb(self, exported: dict[str, Any]) -> None:
        """Add another window's :meth:`export` to this one (minutes kept apart)."""
        with self._lock:
            for data in exported.get("slots", []):
                minute = int(data["minute"])
                slot = next((s for s in self._slots if s.minute == minute), None)
                if slot is None:
                    slot = _Slot(minute)
                    self._slots.append(slot)
                    self._slots.sort(key=lambda s: s.minute)
                    del self._slots[: -self.window_minutes]
                for state, count in data["states"].items():
                    slot.states[state] = slot.states.get(state, 0) + int(count)
                for hop, hist in data["hops"].items():
                    if hop in slot.hops:
                        slot.hops[hop].merge(_import(hist, FINE_BOUNDS))
            for hop, hist in exported.get("forever", {}).items():
                if hop in self._forever:
                    self._forever[hop].merge(_import(hist, BOUNDS))

    def cumulative(self) -> dict[str, Histogram]:
        with self._lock:
            out = {}
            for hop, h in self._forever.items():
                copy = Histogram()
                copy.merge(h)
                out[hop] = copy
            return out


def _export(histogram: Histogram) -> dict[str, Any]:
    return {
        "counts": histogram.counts,
        "total": histogram.total,
        "n": histogram.n,
        "low": histogram.low,
        "high": histogram.high,
    }


def _import(data: dict[str, Any], bounds: tuple[float, ...]) -> Histogram:
    return Histogram(
        bounds, list(data["counts"]), data["total"], data["n"], data["low"], data["high"]
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


_DEVICE_OUTCOMES = frozenset({"succeeded", "failed", "rejected", "expired"})


def hops_of(state: str, times: dict[str, str]) -> dict[str, float]:
    """The hop this transition completed, from a command record's ``times`` (pure)."""
    from datetime import datetime

    def at(name: str) -> float | None:
        text = times.get(name)
        return datetime.fromisoformat(text).timestamp() if text else None

    now = at(state)
    if now is None:
        return {}
    hops: dict[str, float] = {}
    if state == "sent" and (queued := at("queued")) is not None:
        hops["accepted_to_sent"] = now - queued
    elif state == "delivered" and (sent := at("sent")) is not None:
        hops["sent_to_delivered"] = now - sent
    elif state in _DEVICE_OUTCOMES:
        if (delivered := at("delivered")) is not None:
            hops["delivered_to_final"] = now - delivered
        if (queued := at("queued")) is not None:
            hops["end_to_end"] = now - queued
    return {hop: max(0.0, seconds) for hop, seconds in hops.items()}


def hop_histograms(latency: LatencyWindow) -> dict[str, HopHistogram]:
    """Each hop's latency since start, cumulative per bound (the Prometheus form)."""
    out = {}
    for hop, histogram in latency.cumulative().items():
        running, buckets = 0, []
        for bound, count in zip((*BOUNDS, float("inf")), histogram.counts, strict=True):
            running += count
            buckets.append((bound, running))
        out[hop] = HopHistogram(buckets, histogram.total)
    return out
