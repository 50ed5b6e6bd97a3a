"""Gateways' requests to this shard owner (``P/_bridge/req/<group>``), answered over MQTT 5.

A request is PUBACKed only when it is done (committed, or refused), so a worker that dies
half-way gets it again through its group's persistent session, or its successor does. A send
carries the command id the gateway made, so the same request twice accepts one command; a
request past its deadline is refused (its gateway has given up and answered 503).

Anything that is not a well-formed request from a service login is dropped and counted,
never committed; the response topic must be a gateway's (``P/_bridge/resp/...``), so a
request cannot make the owner publish anywhere else.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from broker_bridge.counters import Counters
from broker_bridge.errors import TetherError, Unavailable
from broker_bridge.outbound import Outbound
from broker_bridge.store.shard import StoreUnavailable
from tether.protocol import ProtocolError
from tether.protocol.internal import Answer, InternalTopics, Request, decode_request

if TYPE_CHECKING:
    from broker_bridge.bridge import Bridge

log = logging.getLogger(__name__)


def _error_answer(error: BaseException) -> Answer:
    if isinstance(error, StoreUnavailable):
        error = Unavailable(str(error))
    if isinstance(error, TetherError):
        return Answer(False, code=error.code, status=error.status, message=error.message)
    log.error("a request failed", exc_info=error)
    return Answer(False, code="internal", status=500, message="internal error")


class RequestHandler:
    def __init__(
        self, bridge: Bridge, outbound: Outbound, internal: InternalTopics, counters: Counters
    ) -> None:
        self.bridge = bridge
        self.outbound = outbound
        self.counters = counters
        self._answers_under = internal.response("")
        # Until the owner has resumed its queued commands, requests wait (in arrival order):
        # a new command must not overtake older ones still to be published.
        self._lock = threading.Lock()
        self._open = False
        self._waiting: list[mqtt.MQTTMessage] = []
        # Device administration talks to the broker's dynamic security plugin and blocks.
        self._admin = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bridge-admin")

    def close(self) -> None:
        self._admin.shutdown(wait=True, cancel_futures=True)

    def open(self) -> None:
        """Start handling requests: the ones that waited first, in order."""
        with self._lock:
            self._open = True
            waiting, self._waiting = self._waiting, []
            for message in waiting:
                self._handle(message)

    def handle(self, message: mqtt.MQTTMessage) -> None:
        """On the session's I/O thread."""
        with self._lock:
            if not self._open:
                self._waiting.append(message)
                return
            self._handle(message)

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if (
            not isinstance(response_topic, str)
            or not response_topic.startswith(self._answers_under)
            or not correlation
        ):
            self._drop(message, "no gateway response topic")
            return
        try:
            request = decode_request(bytes(message.payload))
        except ProtocolError as exc:
            self._drop(message, str(exc))
            return

        def reply(answer: Answer) -> None:
            self.outbound.answer(response_topic, correlation, answer)
            self.bridge.session.ack(message)

        if time.time() > request.deadline:
            self.counters.count("expired_requests")
            reply(Answer(False, code="unavailable", status=503, message="the request expired"))
            return
        self.counters.count(f"requests_{request.op}")
        try:
            self._dispatch(request, reply)
        except Exception as exc:
            reply(_error_answer(exc))

    def _drop(self, message: mqtt.MQTTMessage, why: str) -> None:
        log.warning("dropped a request on %s: %s", message.topic, why)
        self.counters.count("malformed_requests")
        self.bridge.session.ack(message)

    def _dispatch(self, request: Request, reply: Callable[[Answer], None]) -> None:
        bridge = self.bridge
        if request.op == "send":
            command = request.command
            assert command is not None
            sent = bridge.send(
                command.device_id,
                command.name,
                command.args,
                ttl=command.ttl,
                idempotency_key=command.idempotency_key,
                request_hash=command.request_hash,
                command_id=command.id,
            )
            _on_done(sent, lambda a: Answer(True, a.record_json, a.created), reply)
        elif request.op == "cancel":
            assert request.command_id is not None
            cancelled = bridge.cancel_on(request.device_id, request.command_id)
            _on_done(cancelled, lambda record: Answer(True, _json(record)), reply)
        else:
            work = {
                "provision": bridge.provisioner.provision,
                "rotate": bridge.provisioner.rotate,
            }.get(request.op)
            if work is not None:
                future = self._admin.submit(work, request.device_id)
                _on_done(future, lambda rp: Answer(True, _json(rp[0]), password=rp[1]), reply)
            else:
                revoked = self._admin.submit(bridge.provisioner.revoke, request.device_id)
                _on_done(revoked, lambda record: Answer(True, _json(record)), reply)


def _json(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"))


def _on_done(
    future: Future[Any], ok: Callable[[Any], Answer], reply: Callable[[Answer], None]
) -> None:
    def done(f: Future[Any]) -> None:
        error = f.exception()
        reply(_error_answer(error) if error is not None else ok(f.result()))

    future.add_done_callback(done)
