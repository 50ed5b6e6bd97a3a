"""``GET /metrics``: Prometheus text, built at scrape time from the command service.

No per-device labels: a fleet of 10,000 devices must not mean 10,000 series per metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from tether.protocol.service import Figures
from ui_gateway.auth import Role
from ui_gateway.context import gateway_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot(Collector):
    def __init__(self, fleet: dict[str, Any], figures: Figures, live_subscribers: int) -> None:
        self.fleet = fleet
        self.figures = figures
        self.live_subscribers = live_subscribers

    def collect(self) -> Iterable[Metric]:
        devices = self.fleet["devices"]
        presence = GaugeMetricFamily(
            "tether_devices", "Provisioned devices by presence", labels=["presence"]
        )
        presence.add_metric(["online"], devices["online"])
        presence.add_metric(["offline"], devices["offline"])
        yield presence
        yield GaugeMetricFamily(
            "tether_commands_pending",
            "Commands not yet in a terminal state",
            value=self.fleet["pending"],
        )
        states = GaugeMetricFamily("tether_commands", "Stored commands by state", labels=["state"])
        for state, count in sorted(self.fleet["commands_by_state"].items()):
            states.add_metric([state], count)
        yield states
        shards = GaugeMetricFamily("tether_shard_up", "1 if the shard answered", labels=["shard"])
        for shard in self.fleet["shards"]:
            shards.add_metric([str(shard["shard"])], 1 if shard["ok"] else 0)
        yield shards
        bridge = CounterMetricFamily(
            "tether_bridge_messages", "Bridge message outcomes since start", labels=["outcome"]
        )
        for outcome, count in sorted(self.figures.counters.items()):
            bridge.add_metric([outcome], count)
        yield bridge
        yield GaugeMetricFamily(
            "tether_broker_connected",
            "1 if the bridge is connected to the broker",
            value=1 if self.figures.broker_connected else 0,
        )
        figures = self.figures.broker["figures"]
        assert isinstance(figures, dict)
        for name, value in sorted(figures.items()):
            yield GaugeMetricFamily(
                f"tether_broker_{name}", f"Mosquitto $SYS figure {name}", value=value
            )
        latency = HistogramMetricFamily(
            "tether_command_hop_seconds", "Latency of each command hop since start", labels=["hop"]
        )
        for hop, histogram in self.figures.hops.items():
            buckets = [(_le(bound), count) for bound, count in histogram.buckets]
            latency.add_metric([hop], buckets, sum_value=histogram.total_seconds)
        yield latency
        yield GaugeMetricFamily(
            "tether_stream_clients", "Live event stream subscribers", value=self.live_subscribers
        )


async def metrics_endpoint(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER)
    registry = CollectorRegistry(auto_describe=False)
    service = gateway.service
    snapshot = _Snapshot(await service.fleet(), await service.figures(), service.live_subscribers)
    registry.register(snapshot)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
