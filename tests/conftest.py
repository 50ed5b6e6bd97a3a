from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.brokers import BrokerHandle, DockerBroker, LocalBroker, docker_engine_available


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
