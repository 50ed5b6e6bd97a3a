from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from broker_bridge.latency import LatencyWindow, hops_of


def test_quantiles_are_values_not_bucket_bounds() -> None:
    window = LatencyWindow(clock=lambda: 600.0)
    for ms in range(1, 121):  # 1 ms … 120 ms, evenly
        window.record("succeeded", {"end_to_end": ms / 1000})
    summary = window.summary()
    hop = summary["latency_ms"]["end_to_end"]  # type: ignore[index]
    assert hop["count"] == 120
    assert 55 <= hop["p50"] <= 65, hop  # a coarse bucket bound would say 100
    assert 112 <= hop["p99"] <= 120, hop
    json.dumps(summary, allow_nan=False)  # no infinity in what the API sends


def test_quantiles_stay_within_the_values_seen() -> None:
    window = LatencyWindow(clock=lambda: 600.0)
    for ms in [1] * 98 + [300, 2_000_000]:  # one beyond the last bucket
        window.record("succeeded", {"end_to_end": ms / 1000})
    hop = window.summary()["latency_ms"]["end_to_end"]  # type: ignore[index]
    assert hop["p50"] == 1.0 and 250 <= hop["p99"] <= 400, hop
    single = LatencyWindow(clock=lambda: 600.0)
    single.record("succeeded", {"end_to_end": 0.0421})
    one = single.summary()["latency_ms"]["end_to_end"]  # type: ignore[index]
    assert one["p50"] == one["p99"] == 42.1


def test_the_window_forgets_old_minutes_but_the_cumulative_view_does_not() -> None:
    now = [0.0]
    window = LatencyWindow(window_minutes=2, clock=lambda: now[0])
    window.record("sent", {"accepted_to_sent": 0.001})
    now[0] = 180.0  # three minutes later
    window.record("sent", {"accepted_to_sent": 0.002})
    assert window.summary()["latency_ms"]["accepted_to_sent"]["count"] == 1  # type: ignore[index]
    assert window.cumulative()["accepted_to_sent"].n == 2
    assert [m["states"] for m in window.summary()["states_per_minute"]] == [{"sent": 1}]  # type: ignore[index]


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50))
def test_p50_never_exceeds_p99(values: list[float]) -> None:
    window = LatencyWindow(clock=lambda: 0.0)
    for v in values:
        window.record("succeeded", {"end_to_end": v})
    hop = window.summary()["latency_ms"]["end_to_end"]  # type: ignore[index]
    assert min(values) * 1000 - 1e-3 <= hop["p50"] <= hop["p99"] <= max(values) * 1000 + 1e-3


def test_hops_from_a_record() -> None:
    times = {
        "queued": "2026-01-01T00:00:00.000000Z",
        "sent": "2026-01-01T00:00:00.002000Z",
        "delivered": "2026-01-01T00:00:00.005000Z",
        "succeeded": "2026-01-01T00:00:00.105000Z",
    }

    def rounded(hops: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 6) for k, v in hops.items()}

    assert rounded(hops_of("sent", times)) == {"accepted_to_sent": 0.002}
    assert rounded(hops_of("delivered", times)) == {"sent_to_delivered": 0.003}
    final = hops_of("succeeded", times)
    assert round(final["delivered_to_final"], 6) == 0.1 and round(final["end_to_end"], 6) == 0.105
    assert hops_of("cancelled", {"queued": times["queued"], "cancelled": times["sent"]}) == {}


def test_windows_merged_from_their_exports_equal_one_window_that_saw_everything() -> None:
    """A gateway shows the workers' latency by merging their exported windows."""
    now = [1_000_000.0]
    whole, first, second = (LatencyWindow(clock=lambda: now[0]) for _ in range(3))
    for n in range(200):
        now[0] += 1.7  # across several minutes of the window
        hops = {"end_to_end": 0.001 * (n % 37 + 1), "sent_to_delivered": 0.0005 * (n % 11 + 1)}
        whole.record("succeeded", hops)
        (first if n % 3 else second).record("succeeded", hops)
    merged = LatencyWindow(clock=lambda: now[0])
    merged.absorb(first.export())
    merged.absorb(second.export())
    assert merged.summary() == whole.summary()
    assert {h: (c.counts, c.n) for h, c in merged.cumulative().items()} == {
        h: (c.counts, c.n) for h, c in whole.cumulative().items()
    }
