from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_bridge.bridge import Bridge
from mosquitto.process import free_port
from tests.support.bridges import BridgeHandle, bridge_settings
from tests.support.brokers import BrokerHandle, DockerBroker, LocalBroker, docker_engine_available
from tests.support.chaos import PipedGateway
from tests.support.gateways import RunningGateway, start_gateway
from tests.support.processes import GatewayProcess


@pytest.fixture(scope="session")
def use_docker() -> bool:
    return docker_engine_available()


@pytest.fixture
def broker(tmp_path: Path, use_docker: bool) -> Iterator[BrokerHandle]:
    """A fresh Mosquitto with the project's config, on a free port, for one test."""
    data_dir = tmp_path / "mosquitto"
    if use_docker:
        docker_broker = DockerBroker(data_dir)
        docker_broker.start()
        try:
            yield BrokerHandle(docker_broker)
        finally:
            docker_broker.remove()
    else:
        local = LocalBroker(data_dir)
        local.start()
        try:
            yield BrokerHandle(local)
        finally:
            local.stop()


@pytest.fixture
def bridge(broker: BrokerHandle, tmp_path: Path) -> Iterator[BridgeHandle]:
    """A started bridge (4 shards, default policy) over the test's broker."""
    running = Bridge(bridge_settings(broker, tmp_path / "store"))
    running.start()
    try:
        yield BridgeHandle(running)
    finally:
        running.stop()


@pytest.fixture
def gateway(broker: BrokerHandle, tmp_path: Path) -> Iterator[RunningGateway]:
    """The whole server side: gateway + bridge (4 shards) + store, over the test's broker."""
    running = start_gateway(bridge_settings(broker, tmp_path / "store"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def piped_gateway(broker: BrokerHandle, tmp_path: Path) -> Iterator[PipedGateway]:
    """``tether gateway`` as its own process (output on a pipe), for faults that need one:
    SIGKILL, a file-size limit, raw sockets."""
    gateway = PipedGateway(broker, tmp_path, free_port(), tmp_path / "unused.log")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def gateway_process(broker: BrokerHandle, tmp_path: Path) -> Iterator[GatewayProcess]:
    """``tether gateway`` as its own process, for clients outside this one (browser, Node)."""
    gateway = GatewayProcess(broker, tmp_path, free_port(), tmp_path / "gateway.log")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
